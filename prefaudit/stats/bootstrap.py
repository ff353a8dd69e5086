"""Seeded, vectorised bootstrap over pairs for statistics that are ratios of per-pair sums.

Pairs whose per-pair values are identical (the same label pattern gives the same alpha
contribution and the same Dawid–Skene posterior) are merged into groups first. Drawing
``n`` pairs with replacement is then the same as drawing group counts from a multinomial
with the group shares as probabilities, so a resample is one row of group counts and its
sums are one matrix product: ``resamples @ group_values``. With 100,000 pairs and a few
thousand distinct patterns, 1,000 resamples cost a few matrix products.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Cells (resamples x groups) drawn per chunk; bounds the memory of the count matrix.
MAX_CHUNK_CELLS = 2_000_000


def group_rows(values: np.ndarray, sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``values`` (pairs x features, no NaN) and how many pairs share each.

    Returns ``(group_values, group_sizes)``. Groups are in sorted row order (first column
    most significant), so they do not depend on the order of the pairs; the result is
    ``np.unique(values, axis=0, return_counts=True)``, found by sorting the columns as keys
    (no structured copy of the whole matrix). ``sizes`` says how many pairs each row stands
    for (default one): the result is then that of the matrix with each row repeated so often.
    """
    values = np.asarray(values, dtype="float64")
    if values.ndim == 1:
        values = values[:, None]
    sizes = np.ones(len(values), dtype=np.int64) if sizes is None else np.asarray(sizes, dtype=np.int64)
    if not values.size:
        return np.unique(values, axis=0, return_counts=True)
    order = np.lexsort(values.T[::-1])
    new = np.zeros(len(order), dtype=bool)
    new[0] = True
    for column in values.T:
        ranked = column[order]
        new[1:] |= ranked[1:] != ranked[:-1]
    starts = np.flatnonzero(new)
    return values[order[starts]], np.add.reduceat(sizes[order], starts)


def resampled_counts(group_sizes: np.ndarray, n_bootstrap: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield chunks of bootstrap resamples as ``(chunk, n_groups)`` counts of pairs per group.

    Each row sums to the number of pairs; all rows together number ``n_bootstrap``.
    """
    sizes = np.asarray(group_sizes, dtype="float64")
    n = int(sizes.sum())
    shares = sizes / sizes.sum()
    chunk = max(1, MAX_CHUNK_CELLS // max(1, len(sizes)))
    for start in range(0, n_bootstrap, chunk):
        yield rng.multinomial(n, shares, size=min(chunk, n_bootstrap - start))


def bootstrap_sums(values: np.ndarray, n_bootstrap: int, seed: int,
                   sizes: np.ndarray | None = None) -> np.ndarray:
    """Column sums of ``values`` (pairs x features) over ``n_bootstrap`` resamples of the pairs.

    Returns ``(n_bootstrap, n_features)``; row ``b`` equals ``values[idx_b].sum(axis=0)`` for a
    resample ``idx_b`` of the pair indices drawn with replacement. Seeded: the same
    ``values`` (in any pair order) and ``seed`` give the same sums. ``sizes``: how many pairs
    each row of ``values`` stands for (:func:`group_rows`).
    """
    group_values, sizes = group_rows(values, sizes)
    rng = np.random.default_rng(seed)
    parts = [counts @ group_values for counts in resampled_counts(sizes, n_bootstrap, rng)]
    return np.vstack(parts) if parts else np.empty((0, group_values.shape[1]))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaN samples dropped; NaNs if none left)."""
    samples = np.asarray(samples, dtype="float64")
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)
