"""Cosine nearest-neighbour search on unit vectors without an n x n matrix in memory.

Every function works on row blocks: a block of queries is multiplied with the base set
(``block x n`` similarities, about :data:`BLOCK_BYTES` of float32) and reduced to what is
needed (the top k, or the entries above a threshold) before the next block, so memory grows
linearly with n while time grows with n squared (one matrix product).
"""

from __future__ import annotations

import numpy as np

#: Size of one block of similarities, in bytes.
BLOCK_BYTES = 64 * 2**20


def _block_rows(n_base: int) -> int:
    return max(1, BLOCK_BYTES // (4 * max(n_base, 1)))


def top_k(queries: np.ndarray, base: np.ndarray, k: int, *,
          self_offset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar base rows of each query row.

    Returns ``(index, similarity)``, both ``(len(queries), k)``, best first; ties break by
    lower index. ``self_offset=o`` says query i is base row ``o + i`` (queries are part of the
    base), and that row is never listed. When the base has fewer than k usable rows, missing
    slots hold index -1 and similarity -inf.
    """
    nq, nb = len(queries), len(base)
    k_eff = min(k, nb - (0 if self_offset is None else 1))
    idx = np.full((nq, k), -1, dtype=np.int64)
    sim = np.full((nq, k), -np.inf, dtype=np.float32)
    if k_eff <= 0 or nq == 0:
        return idx, sim
    step = _block_rows(nb)
    for start in range(0, nq, step):
        s = queries[start:start + step] @ base.T
        if self_offset is not None:
            rows = np.arange(len(s))
            s[rows, self_offset + start + rows] = -np.inf
        if k_eff == 1:
            part = s.argmax(axis=1)[:, None]
        elif k_eff < nb:
            part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
        else:
            part = np.tile(np.arange(nb), (len(s), 1))
        ps = np.take_along_axis(s, part, axis=1)
        order = np.lexsort((part, -ps), axis=1)
        idx[start:start + step, :k_eff] = np.take_along_axis(part, order, axis=1)
        sim[start:start + step, :k_eff] = np.take_along_axis(ps, order, axis=1)
    return idx, sim


def pairs_above(vectors: np.ndarray, threshold: float, *,
                max_per_row: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with cosine similarity >= ``threshold``.

    Each row keeps at most its ``max_per_row`` most similar partners (so a large group of
    near-copies costs n x max_per_row pairs, not n squared). Returns ``(i, j, similarity)``
    sorted by i then j.
    """
    n = len(vectors)
    step = _block_rows(n)
    out_i, out_j, out_s = [], [], []
    for start in range(0, n, step):
        s = vectors[start:start + step] @ vectors.T
        rows = np.arange(len(s))
        s[rows, start + rows] = -np.inf
        hit = np.flatnonzero(s.max(axis=1) >= threshold)  # cheap pre-filter of rows with a match
        if not len(hit):
            continue
        r, c = np.nonzero(s[hit] >= threshold)
        r = hit[r]
        v = s[r, c]
        counts = np.bincount(r, minlength=len(s))
        if counts.max() > max_per_row:
            order = np.lexsort((c, -v, r))
            r, c, v = r[order], c[order], v[order]
            rank = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = rank < max_per_row
            r, c, v = r[keep], c[keep], v[keep]
        out_i.append(r + start)
        out_j.append(c)
        out_s.append(v)
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.float32)
    i, j, v = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)
    return lo[first], hi[first], v[first].astype(np.float32)
