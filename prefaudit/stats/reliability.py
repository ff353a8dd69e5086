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


def triple_counts(rows: np.ndarray, labels: np.ndarray, n_rows: int,
                  n_categories: int = N_CATEGORIES) -> np.ndarray:
    """:func:`category_counts` of labels given as (row, label code) pairs, one per label."""
    rows, labels = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    return np.bincount(rows * n_categories + labels, minlength=n_rows * n_categories).reshape(n_rows, -1)


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
    rows, annotators = np.nonzero(~np.isnan(labels))
    return cohen_kappa_triples(rows, annotators, labels[rows, annotators].astype(np.int64),
                               labels.shape[1], n_categories)


def cohen_kappa_triples(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray, n_annotators: int,
                        n_categories: int = N_CATEGORIES, *,
                        both_orientations: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cohen_kappa_matrix` of the labels given as (row, annotator, label code) triples,
    one per label (at most one per row and annotator); with ``both_orientations``, of the
    matrix :func:`both_orientations` makes of them (every count doubles, A and B swapped in
    the copy).

    All annotator pairs' contingency tables are counted at once (:func:`contingency_tables`),
    so the cost grows with the labels, not with the number of annotator pairs times rows.
    """
    rows, annotators, labels = (np.asarray(a, dtype=np.int64) for a in (rows, annotators, labels))
    table = contingency_tables(rows, annotators, labels, n_annotators, n_categories)
    given_j, given_k = table.sum(axis=3), table.sum(axis=2)  # each annotator's labels on shared rows
    agreed = np.trace(table, axis1=2, axis2=3)
    overlap = table.sum(axis=(2, 3))
    per_annotator = np.bincount(annotators, minlength=n_annotators)
    if both_orientations:  # the swapped copy swaps the categories of the margins; agreement stays
        swap = [1, 0, *range(2, n_categories)]
        given_j, given_k = given_j + given_j[..., swap], given_k + given_k[..., swap]
        agreed, overlap, per_annotator = 2 * agreed, 2 * overlap, 2 * per_annotator
    np.fill_diagonal(overlap, per_annotator)
    total = overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = agreed / total
        p_e = np.einsum("jka,jka->jk", given_j, given_k).astype("float64") / total**2
        kappa = np.where((total > 0) & (p_e < 1.0), (p_o - p_e) / (1.0 - p_e), np.nan)
    np.fill_diagonal(kappa, np.where(np.diagonal(overlap) > 0, 1.0, np.nan))
    return kappa, overlap


def contingency_tables(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray, n_annotators: int,
                       n_categories: int = N_CATEGORIES) -> np.ndarray:
    """``table[j, k, a, b]``: rows on which annotator ``j`` gave label ``a`` and annotator
    ``k != j`` gave label ``b`` (the diagonal ``j == k`` is not counted and is zero).

    Labels are (row, annotator, label code) triples, one per label. Only rows with two or
    more labels count. Where rows hold few labels each, every ordered pair of labels within a
    row is counted with one ``bincount`` (cost: the sum over rows of squared label counts);
    where rows hold many, with one 0/1 matrix product per pair of categories (cost: rows x
    annotators squared; integer counts, exact in float64).
    """
    per_row = np.bincount(rows)
    shared = per_row[rows] >= 2
    order = np.argsort(rows[shared], kind="stable")
    rows, annotators, labels = rows[shared][order], annotators[shared][order], labels[shared][order]
    _, start, m = np.unique(rows, return_index=True, return_counts=True)
    n_cells = n_annotators * n_annotators * n_categories * n_categories
    if (m * m).sum() <= n_categories * len(m) * n_annotators:  # no more pairs than one-hot cells
        size = np.repeat(m, m)  # per label: the labels in its row, itself included
        label_i = np.repeat(np.arange(len(rows)), size)
        label_k = np.repeat(np.repeat(start, m), size) + np.arange(len(label_i)) - np.repeat(
            np.cumsum(size) - size, size)
        other = label_i != label_k
        label_i, label_k = label_i[other], label_k[other]
        key = ((annotators[label_i] * n_annotators + annotators[label_k]) * n_categories
               + labels[label_i]) * n_categories + labels[label_k]
        table = np.bincount(key, minlength=n_cells)
        return table.reshape(n_annotators, n_annotators, n_categories, n_categories)
    row = np.repeat(np.arange(len(m)), m)
    onehot = []
    for c in range(n_categories):
        x = np.zeros((len(m), n_annotators))
        x[row[labels == c], annotators[labels == c]] = 1.0
        onehot.append(x)
    table = np.stack([np.stack([np.rint(onehot[a].T @ onehot[b]) for b in range(n_categories)], axis=-1)
                      for a in range(n_categories)], axis=-2).astype(np.int64)
    table[np.arange(n_annotators), np.arange(n_annotators)] = 0
    return table


def leave_one_out_agreement(labels: np.ndarray,
                            n_categories: int = N_CATEGORIES) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator: share of their labels equal to the majority of the *other* labels.

    Pairs where the other annotators' top label is shared by two categories (or where no one
    else judged) are skipped. Returns ``(agreement, n_compared)`` per annotator; agreement is
    NaN for an annotator with no comparable pair.
    """
    labels = np.asarray(labels, dtype="float64")
    counts = category_counts(labels, n_categories)
    rows, annotators = np.nonzero(~np.isnan(labels))
    return leave_one_out_triples(rows, annotators, labels[rows, annotators].astype(np.int64), counts,
                                 labels.shape[1])


def leave_one_out_triples(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                          n_annotators: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`leave_one_out_agreement` of labels given as (row, annotator, label code)
    triples, one per label, with ``counts`` the rows' category counts (:func:`triple_counts`)."""
    rows, annotators = np.asarray(rows), np.asarray(annotators)
    shared = counts.sum(axis=1)[rows] >= 2  # alone on its row, a label has no others to agree with
    rows, annotators, labels = rows[shared], annotators[shared], np.asarray(labels, dtype=np.int64)[shared]
    others = counts[rows]
    others[np.arange(len(rows)), labels] -= 1
    top = others.max(axis=1, initial=0)
    usable = ((others == top[:, None]).sum(axis=1) == 1) & (top > 0)
    who = annotators[usable]
    n_compared = np.bincount(who, minlength=n_annotators).astype(np.int64)
    hits = np.bincount(who, weights=others[usable].argmax(axis=1) == labels[usable], minlength=n_annotators)
    with np.errstate(divide="ignore", invalid="ignore"):
        agreement = np.where(n_compared > 0, hits / n_compared, np.nan)
    return agreement, n_compared
