"""Inter-annotator reliability coefficients computed from a pairs x annotators label matrix.

Every function takes a label matrix with categorical codes (``0 = A``, ``1 = B``, ``2 = tie``,
NaN = not judged; see :func:`prefaudit.schema.label_matrix`) or the per-pair category counts
derived from it. All coefficients treat the labels as nominal categories.

Orientation: which response of a pair is "A" is arbitrary. :func:`both_orientations` lists
every pair twice, once as coded and once with A and B swapped (ties unchanged); every
coefficient computed on that matrix is *orientation-free*: it is the same whichever response
is called A, and it does not depend on the order the responses were shown in.

Krippendorff's alpha is written as a function of per-pair sums (:func:`alpha_parts`), so the
alpha of any reweighting of the pairs (a bootstrap resample) is a weighted sum followed by
:func:`alpha_from_totals` — no per-resample pass over the data.
"""

from __future__ import annotations

import numpy as np

from prefaudit.errors import SchemaError

N_CATEGORIES = 3


def swap_ab(labels: np.ndarray) -> np.ndarray:
    """The label matrix with codes A (0) and B (1) exchanged; ties and NaN unchanged."""
    labels = np.asarray(labels, dtype="float64")
    return np.where(labels == 0, 1.0, np.where(labels == 1, 0.0, labels))


def both_orientations(labels: np.ndarray) -> np.ndarray:
    """Rows of ``labels`` followed by the same rows with A and B swapped (2 x n_pairs rows)."""
    labels = np.asarray(labels, dtype="float64")
    return np.vstack([labels, swap_ab(labels)])


def category_counts(labels: np.ndarray, n_categories: int = N_CATEGORIES) -> np.ndarray:
    """Per-pair counts of each category: ``(n_pairs, n_categories)`` integers.

    Raises :class:`~prefaudit.errors.SchemaError` naming the first cell that is not NaN or
    an integer code in ``0 .. n_categories - 1``.
    """
    labels = np.asarray(labels, dtype="float64")
    if labels.ndim != 2:
        raise SchemaError(f"label matrix must be 2-D (pairs x annotators), got shape {labels.shape}")
    seen = ~np.isnan(labels)
    bad = seen & ~np.isin(labels, np.arange(n_categories))
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise SchemaError(f"label matrix row {i}, column {j}: expected a code in 0..{n_categories - 1} "
                          f"or NaN, got {labels[i, j]!r}")
    codes = np.where(seen, labels, -1).astype(np.int64)
    return np.stack([(codes == c).sum(axis=1) for c in range(n_categories)], axis=1)


def alpha_parts(counts: np.ndarray) -> np.ndarray:
    """Each pair's contribution to nominal Krippendorff's alpha: ``(n_pairs, n_categories + 1)``.

    The first columns are the pair's category counts (zero for pairs with fewer than two
    labels, which alpha ignores); the last is the pair's diagonal of the coincidence matrix,
    ``sum_c n_c (n_c - 1) / (m - 1)`` with ``m`` the pair's number of labels.
    """
    counts = np.asarray(counts, dtype="float64")
    m = counts.sum(axis=1)
    pairable = m >= 2
    diag = np.where(pairable, (counts * (counts - 1)).sum(axis=1) / np.maximum(m - 1, 1), 0.0)
    return np.column_stack([counts * pairable[:, None], diag])


def symmetric_alpha_parts(counts: np.ndarray) -> np.ndarray:
    """Per pair, :func:`alpha_parts` of the pair in both orientations, summed: the pair's
    contribution to the orientation-free alpha (a bootstrap resamples both copies together)."""
    counts = np.asarray(counts, dtype="float64")
    return alpha_parts(counts) + alpha_parts(counts[:, [1, 0, *range(2, counts.shape[1])]])


def alpha_from_totals(totals: np.ndarray) -> np.ndarray:
    """Nominal alpha from summed :func:`alpha_parts` (last axis); NaN where alpha is undefined.

    ``alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2)``: observed over expected
    disagreement, with ``n_c`` the pairable labels of category ``c`` and ``o_cc`` the
    coincidence diagonal. Undefined when fewer than two categories occur (no expected
    disagreement).
    """
    totals = np.asarray(totals, dtype="float64")
    n_c, diag = totals[..., :-1], totals[..., -1]
    n = n_c.sum(axis=-1)
    expected = n * n - (n_c * n_c).sum(axis=-1)
    observed = n - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1.0) * observed / expected
    return np.where(expected > 0, alpha, np.nan)


def krippendorff_alpha(labels: np.ndarray) -> float:
    """Nominal Krippendorff's alpha of a label matrix (NaN if fewer than two categories occur).

    1 = perfect agreement, 0 = agreement at the level chance would give with these label
    frequencies, negative = systematic disagreement.
    """
    return float(alpha_from_totals(alpha_parts(category_counts(labels)).sum(axis=0)))


def pair_agreement(counts: np.ndarray) -> np.ndarray:
    """Share of a pair's annotator pairs that gave the same label; NaN for pairs with < 2 labels."""
    counts = np.asarray(counts, dtype="float64")
    m = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (counts * (counts - 1)).sum(axis=1) / (m * (m - 1))
    return np.where(m >= 2, share, np.nan)


def raw_agreement(counts: np.ndarray) -> float:
    """Mean over pairs with two or more labels of :func:`pair_agreement` (NaN if none)."""
    share = pair_agreement(counts)
    return float(np.nanmean(share)) if np.isfinite(share).any() else float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa; NaN unless every pair has the same number (two or more) of labels.

    ``kappa = (P - P_e) / (1 - P_e)`` with ``P`` the mean per-pair agreement and ``P_e`` the
    agreement expected from the pooled category shares.
    """
    counts = np.asarray(counts, dtype="float64")
    m = counts.sum(axis=1)
    if len(counts) == 0 or m.min() < 2 or m.min() != m.max():
        return float("nan")
    p_bar = float(np.mean(pair_agreement(counts)))
    shares = counts.sum(axis=0) / m.sum()
    p_e = float((shares * shares).sum())
    return (p_bar - p_e) / (1.0 - p_e) if p_e < 1.0 else float("nan")


def cohen_kappa_matrix(labels: np.ndarray, n_categories: int = N_CATEGORIES) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa between every two annotators, and how many pairs each two both judged.

    Returns ``(kappa, overlap)``, both ``(n_annotators, n_annotators)``. ``kappa[j, k]`` is
    computed on the pairs both judged; NaN when they share no pair or chance agreement is 1.
    The diagonal is 1 for annotators with at least one label.
    """
    labels = np.asarray(labels, dtype="float64")
    category_counts(labels, n_categories)  # validates the codes
    n_ann = labels.shape[1]
    seen = ~np.isnan(labels)
    overlap = seen.T.astype(np.int64) @ seen.astype(np.int64)
    shared = seen.sum(axis=1) >= 2  # only pairs with two labels can be shared by two annotators
    labels, seen = labels[shared], seen[shared]
    kappa = np.full((n_ann, n_ann), np.nan)
    for j in range(n_ann):
        kappa[j, j] = 1.0 if overlap[j, j] else np.nan
        for k in range(j + 1, n_ann):
            both = seen[:, j] & seen[:, k]
            if not both.any():
                continue
            a, b = labels[both, j].astype(np.int64), labels[both, k].astype(np.int64)
            table = np.bincount(a * n_categories + b, minlength=n_categories**2).reshape(n_categories, -1)
            total = table.sum()
            p_o = np.trace(table) / total
            p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / total**2
            kappa[j, k] = kappa[k, j] = (p_o - p_e) / (1.0 - p_e) if p_e < 1.0 else np.nan
    return kappa, overlap


def leave_one_out_agreement(labels: np.ndarray,
                            n_categories: int = N_CATEGORIES) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator: share of their labels equal to the majority of the *other* labels.

    Pairs where the other annotators' top label is shared by two categories (or where no one
    else judged) are skipped. Returns ``(agreement, n_compared)`` per annotator; agreement is
    NaN for an annotator with no comparable pair.
    """
    labels = np.asarray(labels, dtype="float64")
    counts = category_counts(labels, n_categories)
    agreement = np.full(labels.shape[1], np.nan)
    n_compared = np.zeros(labels.shape[1], dtype=np.int64)
    for j in range(labels.shape[1]):
        own = labels[:, j]
        rows = np.flatnonzero(~np.isnan(own))
        code = own[rows].astype(np.int64)
        others = counts[rows].copy()
        others[np.arange(len(rows)), code] -= 1
        top = others.max(axis=1)
        unique_top = (others == top[:, None]).sum(axis=1) == 1
        usable = unique_top & (top > 0)
        n_compared[j] = int(usable.sum())
        if n_compared[j]:
            agreement[j] = float((others[usable].argmax(axis=1) == code[usable]).mean())
    return agreement, n_compared
