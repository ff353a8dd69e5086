"""Cosine nearest-neighbour search on unit vectors with FAISS.

Up to :data:`EXACT_MAX` base vectors the search is exact (``IndexFlatIP``: one blocked matrix
product, like a hand-written search, without an n x n matrix in memory). Beyond it an inverted
file index (``IndexIVFFlat``, spherical k-means into about ``4 sqrt(n)`` cells) visits only the
``nprobe`` cells nearest to each query; ``nprobe`` is *measured*, not guessed: on a seeded sample
of the queries the exact top-k is computed by brute force and ``nprobe`` doubles until the IVF
answer contains at least :data:`TARGET_RECALL` of it. Time then grows like n sqrt(n) instead of
n squared. A GPU is used when the installed FAISS has one.

Every number is an inner product of the given float32 vectors, so cosine similarity when the
rows have unit length (as :func:`prefaudit.scoring.embed.embed` returns them).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

#: Largest base searched exactly; larger bases get an IVF index.
EXACT_MAX = 20_000
#: Share of the exact top-k that the IVF search must return on the calibration sample.
TARGET_RECALL = 0.995
#: Queries in the calibration sample of ``nprobe``.
CALIBRATION_QUERIES = 1_000
#: Queries per FAISS call (bounds the result arrays held at once).
QUERY_BLOCK = 65_536


@dataclass
class SearchInfo:
    """How the last search was done: ``method`` is ``"exact"`` or ``"ivf"``; for IVF the number
    of cells, the chosen ``nprobe`` and the recall of the exact top-k measured on the sample."""

    method: str
    nlist: int = 0
    nprobe: int = 0
    recall: float = 1.0


#: Filled by every search, for benchmarks and tests.
LAST = SearchInfo("exact")


def top_k(queries: np.ndarray, base: np.ndarray, k: int, *,
          self_offset: int | None = None, exact_max: int | None = None,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar base rows of each query row.

    Returns ``(index, similarity)``, both ``(len(queries), k)``, best first; equal similarities
    are ordered by lower index. ``self_offset=o`` says query i is base row ``o + i`` (queries are
    part of the base), and that row is never listed. When the base has fewer than k usable rows,
    missing slots hold index -1 and similarity -inf. ``exact_max`` overrides :data:`EXACT_MAX`;
    ``seed`` seeds the IVF training sample, its k-means and the calibration sample.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    nq, nb = len(queries), len(base)
    extra = 0 if self_offset is None else 1
    k_eff = min(k, nb - extra)
    idx = np.full((nq, k), -1, dtype=np.int64)
    sim = np.full((nq, k), -np.inf, dtype=np.float32)
    if k_eff <= 0 or nq == 0:
        return idx, sim
    kk = k_eff + extra
    index = _index(base, queries, kk, exact_max if exact_max is not None else EXACT_MAX, seed)
    for start in range(0, nq, QUERY_BLOCK):
        d, i = index.search(queries[start:start + QUERY_BLOCK], kk)
        if self_offset is not None:
            own = self_offset + start + np.arange(len(i))[:, None]
            drop = i == own
            drop[:, -1] |= ~drop.any(axis=1)  # self not returned: drop the last instead
            keep = ~drop
            i = i[keep].reshape(len(i), k_eff)
            d = d[keep].reshape(len(d), k_eff)
        d = np.where(i < 0, -np.inf, d).astype(np.float32)
        order = np.lexsort((np.where(i < 0, np.iinfo(np.int64).max, i), -d), axis=1)
        idx[start:start + len(i), :k_eff] = np.take_along_axis(i, order, axis=1)
        sim[start:start + len(i), :k_eff] = np.take_along_axis(d, order, axis=1)
    return idx, sim


def pairs_above(vectors: np.ndarray, threshold: float, *, max_per_row: int = 20,
                exact_max: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with cosine similarity >= ``threshold``.

    Each row keeps at most its ``max_per_row`` most similar partners (so a large group of
    near-copies costs n x max_per_row pairs, not n squared). Returns ``(i, j, similarity)``
    sorted by i then j. ``exact_max`` and ``seed`` as in :func:`top_k`.
    """
    n = len(vectors)
    idx, sim = top_k(vectors, vectors, max_per_row, self_offset=0, exact_max=exact_max, seed=seed)
    hit = (sim >= threshold) & (idx >= 0)
    r, c = np.nonzero(hit)
    i, j, v = r.astype(np.int64), idx[r, c], sim[r, c]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)
    return lo[first], hi[first], v[first].astype(np.float32)


def _index(base: np.ndarray, queries: np.ndarray, k: int, exact_max: int, seed: int) -> faiss.Index:
    global LAST
    n, dim = base.shape
    if n <= exact_max:
        index = _to_gpu(faiss.IndexFlatIP(dim))
        index.add(base)
        LAST = SearchInfo("exact")
        return index
    nlist = int(min(max(4 * np.sqrt(n), 16), n // 39))
    rng = np.random.default_rng(seed)
    train = base[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True
    index.cp.seed = seed
    index.train(train)
    index.add(base)
    LAST = SearchInfo("ivf", nlist=nlist, **_calibrate(index, base, queries, k, rng))
    return index


def _calibrate(index: faiss.IndexIVFFlat, base: np.ndarray, queries: np.ndarray, k: int,
               rng: np.random.Generator) -> dict:
    """Smallest power-of-two ``nprobe`` whose recall of the exact top-k on a query sample reaches
    :data:`TARGET_RECALL` (all cells, i.e. exact, at worst); sets it on ``index``."""
    sample = queries[np.sort(rng.choice(len(queries), size=min(len(queries), CALIBRATION_QUERIES),
                                        replace=False))]
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    _, truth = flat.search(sample, k)
    del flat
    nprobe = 1
    while True:
        index.nprobe = nprobe
        _, got = index.search(sample, k)
        recall = _recall(truth, got)
        if recall >= TARGET_RECALL or nprobe >= index.nlist:
            return {"nprobe": nprobe, "recall": recall}
        nprobe = min(2 * nprobe, index.nlist)


def _recall(truth: np.ndarray, got: np.ndarray) -> float:
    """Share of the true neighbours (index >= 0) that ``got`` also lists in the same row."""
    found = sum(len(np.intersect1d(t[t >= 0], g)) for t, g in zip(truth, got, strict=True))
    return found / max(int((truth >= 0).sum()), 1)


def _to_gpu(index: faiss.Index) -> faiss.Index:
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    return index
