"""On-disk store of sentence embeddings keyed by model id + text hash.

Each model gets its own folder under ``<cache_dir>/embeddings/``; every call that embeds new
texts appends one shard (``.npz`` with the 16-byte BLAKE2b digests of the texts and their
float32 vectors), written atomically, so an interrupted run keeps what it finished and a
rerun or an overlapping dataset only embeds texts no shard holds yet. Shards are merged into
one when there are more than :data:`MAX_SHARDS`.

A damaged shard (truncated or corrupt, e.g. the disk filled or the machine died mid-write) is
never an error: it is counted in :attr:`EmbeddingStore.discarded`, logged, deleted, and its
texts are embedded again as if never cached.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from pathlib import Path

import numpy as np

#: Merge the shards of a model into one when it has more than this many.
MAX_SHARDS = 32
DIGEST_BYTES = 16
_log = logging.getLogger(__name__)


def text_digest(text: str) -> bytes:
    """16-byte BLAKE2b digest of a text (the cache key within one model)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


def model_folder(cache_dir: str | Path, model_id: str) -> Path:
    """The folder holding the shards of ``model_id`` (readable name + hash of the full id)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.rstrip("/").split("/")[-1])[:40] or "model"
    h = hashlib.blake2b(model_id.encode("utf-8"), digest_size=6).hexdigest()
    return Path(cache_dir).expanduser() / "embeddings" / f"{slug}-{h}"


class EmbeddingStore:
    """The cached vectors of one model: look texts up by digest, add new ones.

    Parameters
    ----------
    folder:
        The model's folder (see :func:`model_folder`); created on the first write.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[bytes, int] = {}
        self._vectors: list[np.ndarray] = []
        self._offset = 0
        #: damaged shards found (and deleted) while reading the folder
        self.discarded: list[Path] = []
        for shard in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
            self._absorb(shard)

    def _absorb(self, shard: Path) -> None:
        try:
            with np.load(shard) as z:
                keys, vecs = z["keys"], z["vectors"]
            problem = _shape_problem(keys, vecs, self._vectors[0].shape[1] if self._vectors else None)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem is None:
            self._add_to_index(keys, vecs)
            return
        # a truncated, corrupt or foreign file: drop it; its texts get embedded again
        self.discarded.append(shard)
        _log.warning("embedding cache: discarded damaged shard %s (%s); its texts are embedded again",
                     shard, problem)
        shard.unlink(missing_ok=True)

    def _add_to_index(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        for i, row in enumerate(keys):
            self._index.setdefault(row.tobytes(), self._offset + i)
        self._vectors.append(vecs.astype(np.float32, copy=False))
        self._offset += len(keys)

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, digests: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``digests`` found in the store and their vectors (in that order)."""
        where = [(i, self._index[d]) for i, d in enumerate(digests) if d in self._index]
        if not where:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        pos, rows = (np.asarray(x, dtype=np.int64) for x in zip(*where, strict=True))
        allv = self._vectors[0] if len(self._vectors) == 1 else np.concatenate(self._vectors)
        self._vectors = [allv]
        return pos, allv[rows]

    def add(self, digests: list[bytes], vectors: np.ndarray) -> None:
        """Append vectors for new digests, as one new shard on disk."""
        if not digests:
            return
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), DIGEST_BYTES)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        self.folder.mkdir(parents=True, exist_ok=True)
        n_shards = len(list(self.folder.glob("*.npz")))
        _write_shard(self.folder / f"{n_shards:06d}-{keys[0].tobytes().hex()[:12]}.npz", keys, vecs)
        self._add_to_index(keys, vecs)
        if n_shards + 1 > MAX_SHARDS:
            self._compact()

    def _compact(self) -> None:
        old = sorted(self.folder.glob("*.npz"))
        keys = np.frombuffer(b"".join(self._index), dtype=np.uint8).reshape(len(self._index), DIGEST_BYTES)
        allv = np.concatenate(self._vectors)[np.fromiter(self._index.values(), dtype=np.int64)]
        merged = self.folder / f"000000-{keys[0].tobytes().hex()[:12]}.npz"
        _write_shard(merged.with_name(merged.name + ".merged"), keys, allv)
        for p in old:
            p.unlink()
        merged.with_name(merged.name + ".merged").replace(merged)
        self._index = {k: i for i, k in enumerate(self._index)}
        self._vectors, self._offset = [allv], len(allv)


def _shape_problem(keys: np.ndarray, vecs: np.ndarray, dim: int | None) -> str | None:
    """Why two arrays read from a shard cannot be its keys and vectors (None if they can)."""
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != DIGEST_BYTES:
        return f"keys of shape {keys.shape} and type {keys.dtype}"
    if vecs.ndim != 2 or len(vecs) != len(keys) or (dim is not None and vecs.shape[1] != dim):
        return f"vectors of shape {vecs.shape} for {len(keys)} keys"
    if not np.issubdtype(vecs.dtype, np.floating) or not np.isfinite(vecs).all():
        return "vectors that are not finite floats"
    return None


def _write_shard(path: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, keys=keys, vectors=vectors)
    tmp.replace(path)
