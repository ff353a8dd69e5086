"""Hugging Face ``datasets`` in: Dataset objects, ``save_to_disk`` folders, ``.arrow`` files and
``hf:ORG/NAME[:CONFIG]`` from the local cache, read as records in batches.

Records come out one batch at a time (:data:`BATCH_SIZE` rows turned into Python values at
once), so a large or streaming (``IterableDataset``) source is never held as a list of dicts;
the loader's format modules, detection and LoadReport then work exactly as for files.
Nothing here downloads: ``hf:`` ids resolve from the datasets cache only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.loaders.io import Record

#: Rows turned into Python records at a time.
BATCH_SIZE = 1000
#: Prefix of a cached hub dataset id on the command line (``hf:ORG/NAME[:CONFIG]``).
HF_PREFIX = "hf:"


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets`` Dataset, IterableDataset or a dict of them (checked
    by type name, so ``datasets`` is imported only when such an object is passed)."""
    return type(obj).__module__.split(".")[0] == "datasets" and type(obj).__name__ in (
        "Dataset", "IterableDataset", "DatasetDict", "IterableDatasetDict")


def is_dataset_path(data: Any) -> bool:
    """Whether ``data`` names a ``save_to_disk`` folder, an ``.arrow`` file or an ``hf:`` id."""
    if isinstance(data, str) and data.startswith(HF_PREFIX):
        return True
    if not isinstance(data, (str, Path)):
        return False
    p = Path(data)
    if p.is_dir():
        return (p / "dataset_dict.json").is_file() or (p / "state.json").is_file()
    return p.is_file() and p.suffix == ".arrow"


def open_path(data: str | Path, *, cache_dir: str | Path | None = None) -> Any:
    """The Dataset / DatasetDict a ``save_to_disk`` folder, ``.arrow`` file or ``hf:`` id holds."""
    import datasets

    if isinstance(data, str) and data.startswith(HF_PREFIX):
        return from_cache(data[len(HF_PREFIX):], cache_dir=cache_dir)
    p = Path(data)
    try:
        if p.is_dir():
            return datasets.load_from_disk(str(p))
        return datasets.Dataset.from_file(str(p))
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"not a readable Hugging Face dataset ({str(exc).splitlines()[0]})",
                              path=str(p)) from None


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """The datasets cache searched for ``hf:`` ids (``HF_DATASETS_CACHE``, read at call time)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("HF_DATASETS_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "datasets"


def from_cache(spec: str, *, cache_dir: str | Path | None = None) -> Any:
    """The DatasetDict of ``ORG/NAME[:CONFIG]`` as the datasets cache holds it (what
    ``load_dataset`` prepared there earlier); never downloads. Not cached: one line naming
    the id and the folder searched."""
    name, _, config = spec.partition(":")
    if not name or name.count("/") > 1:
        raise ConfigError(f"{HF_PREFIX}{spec}: expected {HF_PREFIX}ORG/NAME or {HF_PREFIX}ORG/NAME:CONFIG")
    from datasets.packaged_modules.cache.cache import Cache

    folder = cache_folder(cache_dir)
    try:
        builder = Cache(cache_dir=str(folder), repo_id=name, dataset_name=name.split("/")[-1],
                        config_name=config or None, version="auto", hash="auto")
        return builder.as_dataset()
    except (ValueError, FileNotFoundError) as exc:
        what = f"{name} (config {config!r})" if config else name
        detail = str(exc).replace("\n", "; ")
        raise DataFormatError(f"{what} is not in the local datasets cache ({detail}); prefaudit does not "
                              f"download: run datasets.load_dataset({name!r}) once with network, or set "
                              "HF_DATASETS_CACHE", path=f"{HF_PREFIX}{spec} (searched {folder})") from None


def select_split(obj: Any, split: str | None, where: str) -> tuple[Any, str]:
    """The Dataset of ``split`` in a DatasetDict (the only one when there is one split), or
    ``obj`` itself; and a name for it. A missing or unknown split lists the splits."""
    if type(obj).__name__ not in ("DatasetDict", "IterableDatasetDict"):
        if split is not None:
            raise ConfigError(f"{where}: --split {split!r} given, but this is a single dataset, "
                              "not a dict of splits")
        return obj, where
    splits = list(obj.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split is None or split not in obj:
        wanted = "holds several splits" if split is None else f"has no split {split!r}"
        raise ConfigError(f"{where} {wanted}; pass split= (--split) one of: {', '.join(splits)}")
    return obj[split], f"{where}/{split}"


def iter_records(ds: Any, batch_size: int = BATCH_SIZE) -> Iterator[Record]:
    """``(None, record_no, record)`` for each row of a Dataset or IterableDataset, one batch
    of ``batch_size`` rows converted to Python values at a time."""
    record_no = 0
    for batch in ds.iter(batch_size=batch_size):
        keys = list(batch)
        columns = [batch[k] for k in keys]
        for values in zip(*columns, strict=True):
            record_no += 1
            yield None, record_no, dict(zip(keys, values, strict=True))
