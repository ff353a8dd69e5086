"""Process-wide settings prefaudit relies on, each stated once: the cache folder, offline mode
and (for the command line) Arrow's allocator.

prefaudit never downloads a model: :func:`stay_offline` (run when ``prefaudit`` is imported)
sets ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` unless the caller set them already.
Embeddings, log-probs and converted models are cached under :func:`default_cache_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the cache folder.
CACHE_ENV = "PREFAUDIT_CACHE"
#: Environment variables that keep Hugging Face libraries off the network.
OFFLINE_VARIABLES: tuple[str, ...] = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
#: Environment variable naming pyarrow's allocator; when set, :func:`arrow_system_allocator`
#: leaves the choice to it.
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def default_cache_dir() -> Path:
    """``$PREFAUDIT_CACHE`` if set, else ``~/.cache/prefaudit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prefaudit"


def cache_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` (``~`` expanded) when given, else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def stay_offline() -> None:
    """Set the offline variables to 1 unless they are set (call before transformers is imported)."""
    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")


def arrow_system_allocator() -> None:
    """Make pyarrow (which holds pandas 3's string columns) allocate with the C allocator,
    unless ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise.

    Arrow's default allocator (mimalloc) keeps the memory it frees for itself; with the C
    allocator, NumPy and Python reuse it. The ``prefaudit`` command sets this: it lowered the
    peak RSS of the 1M-pair audit of ``benchmarks/bench_scale.py`` from 2,193-2,242 to
    2,150 MiB. A notebook keeps the allocator it has.
    """
    if os.environ.get(ARROW_POOL_ENV):
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
