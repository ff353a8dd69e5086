"""On-disk cache of response log-probabilities, append-only and resumable.

One JSON-lines file per model key under ``<cache>/logprobs/``. Each line holds one scored
response: ``{"k": entry key, "lp": summed log-prob, "n": tokens scored}``. The entry key hashes
the exact token ids scored (prompt and response after chat template and truncation), so it
already covers the tokenizer, the chat template, the text and ``max_length``; the model key
covers the weights, config, dtype and device type. Lines are appended and flushed batch by
batch, so a run that is killed resumes where it stopped; a partial last line (killed while
writing) is cut off on the next open.
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


def entry_key(prompt_ids: Sequence[int], response_ids: Sequence[int]) -> str:
    """Hash of the exact token ids of one (prompt, response) sequence."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
    h.update(b"|")
    h.update(np.asarray(response_ids, dtype=np.int64).tobytes())
    return h.hexdigest()


class LogprobCache:
    """Append-only store of ``entry key -> (summed log-prob, tokens)`` for one model.

    ``path=None`` keeps everything in memory (nothing is written).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, tuple[float, int]] = {}
        if self.path is not None and self.path.exists():
            self._read()

    @classmethod
    def for_model(cls, model: Any, cache_dir: str | Path | None) -> LogprobCache:
        """The cache file of ``model`` under ``cache_dir/logprobs`` (in memory if None)."""
        if cache_dir is None:
            return cls(None)
        return cls(Path(cache_dir).expanduser() / "logprobs" / f"{model_key(model)}.jsonl")

    def _read(self) -> None:
        assert self.path is not None
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):  # a write was cut off: drop the partial line
            with self.path.open("r+b") as f:
                f.truncate(end)
        for line in raw[:end].splitlines():
            rec = json.loads(line)
            self._data[rec["k"]] = (float(rec["lp"]), int(rec["n"]))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> tuple[float, int] | None:
        """``(summed log-prob, tokens scored)`` or None when not cached."""
        return self._data.get(key)

    def put_many(self, entries: Iterable[tuple[str, float, int]]) -> None:
        """Store entries and append them to the file (flushed before returning)."""
        lines = []
        for key, logp, n in entries:
            self._data[key] = (float(logp), int(n))
            lines.append(json.dumps({"k": key, "lp": float(logp), "n": int(n)}) + "\n")
        if self.path is None or not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
