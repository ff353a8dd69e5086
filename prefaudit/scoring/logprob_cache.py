"""On-disk cache of per-pair reference scores, append-only and resumable.

One JSON-lines file per model key under ``<cache>/logprobs/``. Each line holds one scored
pair: ``{"k": pair key, "v": [chosen log-prob, rejected log-prob, CHES, normalised CHES]}``
(:data:`VALUES`). The pair key hashes the exact token ids scored (prompt, chosen and rejected
after chat template and truncation), so it already covers the tokenizer, the encoding, the text
and ``max_length``; the model key covers the weights, config, dtype and device type. Lines are
appended and flushed batch by batch, so a run that is killed resumes where it stopped.

A damaged file is never an error: a line that is cut off (killed while writing) or does not
parse as an entry is discarded and counted (:attr:`LogprobCache.discarded`), the file is
rewritten without it, and its pair is scored again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Values sampled from the start and the end of every weight tensor for the model key.
_SAMPLE = 256
#: What each cache line holds per pair, in order.
VALUES: tuple[str, ...] = ("chosen_logp", "rejected_logp", "ches", "ches_normalized")
#: Version of the line format, part of the file name (files of older formats are left alone).
FORMAT = "v2"


def model_key(model: Any) -> str:
    """Short hash naming a model's numbers: config, dtype, device type and sampled weights.

    Hashing every weight would take seconds on a large model; the first and last values of
    each tensor, with all shapes and names, tell apart any two checkpoints in practice.
    """
    import torch

    h = hashlib.sha256()
    h.update(model.config.to_json_string(use_diff=False).encode())
    first = next(model.parameters())
    h.update(f"{first.dtype}|{first.device.type}".encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            flat = p.detach().reshape(-1)
            h.update(f"{name}{tuple(p.shape)}".encode())
            sample = torch.cat([flat[:_SAMPLE], flat[-_SAMPLE:]]).float().cpu().numpy()
            h.update(sample.tobytes())
    return h.hexdigest()[:20]


def pair_key(prompt_ids: Sequence[int], chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> str:
    """Hash of the exact token ids of one (prompt, chosen, rejected) pair."""
    h = hashlib.blake2b(digest_size=16)
    for part in (prompt_ids, chosen_ids, rejected_ids):
        h.update(np.asarray(part, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


class LogprobCache:
    """Append-only store of ``pair key -> values`` (:data:`VALUES`) for one model.

    ``path=None`` keeps everything in memory (nothing is written). ``discarded`` counts the
    damaged lines dropped when the file was read.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, tuple[float, ...]] = {}
        self.discarded = 0
        if self.path is not None and self.path.exists():
            self._read()

    @classmethod
    def for_model(cls, model: Any, cache_dir: str | Path | None) -> LogprobCache:
        """The cache file of ``model`` under ``cache_dir/logprobs`` (in memory if None)."""
        if cache_dir is None:
            return cls(None)
        return cls(Path(cache_dir).expanduser() / "logprobs" / f"{model_key(model)}.{FORMAT}.jsonl")

    def _read(self) -> None:
        assert self.path is not None
        raw = self.path.read_bytes()
        good: list[bytes] = []
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            entry = _parse(line) if i < len(lines) - 1 else None  # no newline: cut off mid-write
            if entry is None:
                self.discarded += 1
                continue
            self._data[entry[0]] = entry[1]
            good.append(line + b"\n")
        if self.discarded:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(b"".join(good))
            tmp.replace(self.path)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> tuple[float, ...] | None:
        """The cached :data:`VALUES` of a pair, or None when not cached."""
        return self._data.get(key)

    def put_many(self, entries: Iterable[tuple[str, Sequence[float]]]) -> None:
        """Store ``(pair key, values)`` entries and append them to the file (flushed before returning)."""
        lines = []
        for key, values in entries:
            vals = tuple(float(v) for v in values)
            if len(vals) != len(VALUES):
                raise ValueError(f"a cache entry holds {len(VALUES)} values ({', '.join(VALUES)}), "
                                 f"got {len(vals)}")
            self._data[key] = vals
            lines.append(json.dumps({"k": key, "v": list(vals)}) + "\n")
        if self.path is None or not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()


def _parse(line: bytes) -> tuple[str, tuple[float, ...]] | None:
    """``(key, values)`` of one well-formed line, else None."""
    try:
        rec = json.loads(line)
        key, values = rec["k"], rec["v"]
        if not isinstance(key, str) or not isinstance(values, list) or len(values) != len(VALUES):
            return None
        return key, tuple(float(v) for v in values)
    except (ValueError, TypeError, KeyError):
        return None
