"""Dawid–Skene EM: annotator confusion matrices, a consensus label and its posterior per pair.

The model: each pair has a true class ``z`` (A, B or tie) drawn from ``prior``; annotator
``j`` reports label ``l`` with probability ``confusion[j, z, l]``, independently of the other
annotators given ``z``. EM alternates the posterior of ``z`` per pair (E-step) and the
maximum a posteriori prior and confusion matrices (M-step, with ``smoothing`` pseudo-counts
per cell so an annotator with few labels is never trusted absolutely).

The fit is deterministic: EM starts from each pair's vote shares (the majority vote), so no
seed is needed, and it runs on the distinct label patterns weighted by how many pairs share
each, so its cost grows with the number of patterns, not of pairs. Classes that no annotator
ever used get posterior 0 (nothing identifies them).

Usable alone::

    fit = fit_dawid_skene(labels)            # labels: pairs x annotators, codes 0..2, NaN missing
    fit.posterior.argmax(axis=1)             # consensus labels
    annotator_accuracy(fit)                  # P(annotator's label == truth) per annotator
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from prefaudit.errors import ConfigError
from prefaudit.stats.reliability import N_CATEGORIES, category_counts


@dataclass(frozen=True)
class DawidSkeneFit:
    """A fitted Dawid–Skene model.

    Attributes
    ----------
    posterior:
        ``(n_pairs, n_classes)``: probability of each true class given all labels of the pair.
    confusion:
        ``(n_annotators, n_classes, n_classes)``: row = true class, column = label given.
    prior:
        ``(n_classes,)``: share of pairs in each true class.
    n_iter:
        EM iterations run.
    converged:
        Whether the largest parameter change fell below the tolerance before ``max_iter``.
    log_likelihood:
        Log-likelihood of the labels under the fitted parameters.
    """

    posterior: np.ndarray
    confusion: np.ndarray
    prior: np.ndarray
    n_iter: int
    converged: bool
    log_likelihood: float


def fit_dawid_skene(labels: np.ndarray, n_classes: int = N_CATEGORIES, *, smoothing: float = 1.0,
                    tol: float = 1e-6, max_iter: int = 500) -> DawidSkeneFit:
    """Fit Dawid–Skene EM to a pairs x annotators label matrix.

    Parameters
    ----------
    labels:
        Codes ``0 .. n_classes - 1`` with NaN for "not judged"; every pair needs a label.
    smoothing:
        Dirichlet pseudo-count added to every confusion cell and prior entry (MAP estimate).
    tol:
        Stop when no prior or confusion entry changes by more than this.
    max_iter:
        Upper bound on EM iterations.
    """
    _check_parameters(smoothing, tol, max_iter)
    labels = np.asarray(labels, dtype="float64")
    category_counts(labels, n_classes)  # validates the codes
    rows, annotators = np.nonzero(~np.isnan(labels))
    return fit_dawid_skene_triples(rows, annotators, labels[rows, annotators].astype(np.int64),
                                   labels.shape, n_classes, smoothing=smoothing, tol=tol, max_iter=max_iter)


def fit_dawid_skene_triples(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray,
                            shape: tuple[int, int], n_classes: int = N_CATEGORIES, *, smoothing: float = 1.0,
                            tol: float = 1e-6, max_iter: int = 500, swap_ab: bool = False) -> DawidSkeneFit:
    """:func:`fit_dawid_skene` of the labels given as (row, annotator, label code) triples, one
    per label, of a ``shape = (n_pairs, n_annotators)`` label matrix that is never built.

    With ``swap_ab`` the model is fitted to every pair twice, as given and with labels A (0)
    and B (1) exchanged (the matrix :func:`prefaudit.stats.reliability.both_orientations`
    makes), and ``posterior`` covers the given pairs: equal to fitting that matrix and
    keeping its first ``n_pairs`` rows, without building the second copy.
    """
    _check_parameters(smoothing, tol, max_iter)
    rows, annotators, labels = (np.asarray(a, dtype=np.int64) for a in (rows, annotators, labels))
    n_pairs, n_ann = shape
    if n_pairs == 0 or (np.bincount(rows, minlength=n_pairs) == 0).any():
        raise ConfigError("Dawid–Skene needs at least one label on every pair")
    patterns, inverse, weights = _unique_patterns(rows, annotators, labels, shape)
    if swap_ab:
        patterns, inverse, weights = _with_swapped(patterns, inverse, weights, n_ann)
    used = np.flatnonzero(np.bincount(patterns.label, minlength=n_classes) > 0)
    obs = _Observed(patterns.k, patterns.j, np.searchsorted(used, patterns.label),
                    shape=(patterns.n, n_ann, len(used)))
    weights = weights.astype("float64")

    # start from each pattern's vote shares
    post = np.bincount(obs.k * len(used) + obs.label, minlength=patterns.n * len(used))
    post = post.reshape(patterns.n, len(used)).astype("float64")
    post /= post.sum(axis=1, keepdims=True)
    prior, confusion = _m_step(obs, weights, post, smoothing)
    converged, n_iter = False, 0
    while n_iter < max_iter:
        n_iter += 1
        post, _ = _e_step(obs, prior, confusion)
        new_prior, new_confusion = _m_step(obs, weights, post, smoothing)
        change = max(np.abs(new_prior - prior).max(), np.abs(new_confusion - confusion).max())
        prior, confusion = new_prior, new_confusion
        if change < tol:
            converged = True
            break
    post, log_norm = _e_step(obs, prior, confusion)

    full_post = np.zeros((patterns.n, n_classes))
    full_post[:, used] = post
    full_prior = np.zeros(n_classes)
    full_prior[used] = prior
    full_conf = np.zeros((n_ann, n_classes, n_classes))
    full_conf[np.ix_(np.arange(n_ann), used, used)] = confusion
    return DawidSkeneFit(posterior=full_post[inverse], confusion=full_conf, prior=full_prior,
                         n_iter=n_iter, converged=converged,
                         log_likelihood=float(weights @ log_norm))


def _check_parameters(smoothing: float, tol: float, max_iter: int) -> None:
    if smoothing < 0 or tol <= 0 or max_iter < 1:
        raise ConfigError(f"Dawid–Skene needs smoothing >= 0, tol > 0, max_iter >= 1 "
                          f"(got {smoothing}, {tol}, {max_iter})")


#: Annotators per packed key: a label pattern is packed base 4 (codes -1..2) into int64 keys.
KEY_COLUMNS = 31


class _Patterns(NamedTuple):
    """Distinct label patterns as (pattern, annotator, label) triples, sorted by pattern and
    annotator: the labelled cells of ``np.unique``'s dense pattern matrix in row-major order."""

    k: np.ndarray
    j: np.ndarray
    label: np.ndarray
    n: int


def _unique_patterns(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray,
                     shape: tuple[int, int]) -> tuple[_Patterns, np.ndarray, np.ndarray]:
    """``np.unique(codes, axis=0, return_inverse=True, return_counts=True)`` of the pairs x
    annotators code matrix (-1 = not judged) without building it or the patterns densely:
    the rows are grouped by their :func:`_pattern_keys` and the labels of one row per
    pattern kept as :class:`_Patterns`."""
    first, inverse, counts = _group(_pattern_keys(rows, annotators, labels, shape))
    return _pattern_labels(first, inverse, rows, annotators, labels, shape[0]), inverse, counts


def _pattern_labels(first: np.ndarray, inverse: np.ndarray, rows: np.ndarray, annotators: np.ndarray,
                    labels: np.ndarray, n_rows: int) -> _Patterns:
    """The labels of the rows ``first`` (one per pattern), renumbered to their pattern."""
    is_first = np.zeros(n_rows, dtype=bool)
    is_first[first] = True
    sel = is_first[rows]
    k, j, label = inverse[rows[sel]], annotators[sel], labels[sel]
    order = np.lexsort((j, k))
    return _Patterns(k[order], j[order], label[order], len(first))


def _with_swapped(patterns: _Patterns, inverse: np.ndarray, weights: np.ndarray,
                  n_ann: int) -> tuple[_Patterns, np.ndarray, np.ndarray]:
    """:func:`_unique_patterns` of the pairs followed by the same pairs with A and B swapped,
    from the patterns of the pairs alone; ``inverse`` covers the original pairs."""
    swapped = np.where(patterns.label == 0, 1, np.where(patterns.label == 1, 0, patterns.label))
    rows = np.concatenate([patterns.k, patterns.k + patterns.n])
    annotators = np.concatenate([patterns.j, patterns.j])
    labels = np.concatenate([patterns.label, swapped])
    shape = (2 * patterns.n, n_ann)
    first, both_inverse, _ = _group(_pattern_keys(rows, annotators, labels, shape))
    both_weights = np.bincount(both_inverse, weights=np.concatenate([weights, weights])).astype(np.int64)
    both = _pattern_labels(first, both_inverse, rows, annotators, labels, shape[0])
    return both, both_inverse[:patterns.n][inverse], both_weights


def _pattern_keys(rows: np.ndarray, annotators: np.ndarray, labels: np.ndarray,
                  shape: tuple[int, int]) -> np.ndarray:
    """Each row of the code matrix packed into int64 keys of :data:`KEY_COLUMNS` annotators,
    ``(n_keys, n_rows)``: base 4, first column most significant, so that sorting rows by their
    keys (first key first) sorts them as ``np.unique(axis=0)`` does."""
    n_rows, n_ann = shape
    chunk = annotators // KEY_COLUMNS
    width = np.minimum(KEY_COLUMNS, n_ann - chunk * KEY_COLUMNS)
    keys = np.zeros((max(1, -(-n_ann // KEY_COLUMNS)), n_rows), dtype=np.int64)
    np.add.at(keys, (chunk, rows), (labels + 1) * 4 ** (width - 1 - annotators % KEY_COLUMNS))
    return keys


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of equal columns of ``keys`` in sorted order: each group's first column index,
    each column's group, and the group sizes."""
    order = np.lexsort(keys[::-1])
    new = np.zeros(keys.shape[1], dtype=bool)
    new[:1] = True
    for key in keys:
        ranked = key[order]
        new[1:] |= ranked[1:] != ranked[:-1]
    group = np.cumsum(new) - 1
    inverse = np.empty(keys.shape[1], dtype=np.int64)
    inverse[order] = group
    return order[new], inverse, np.bincount(group)


class _Observed(NamedTuple):
    """The labels of the patterns as (pattern, annotator, label) triples, with the dense shape
    (patterns, annotators, classes): EM then costs O(labels), not O(patterns x annotators)."""

    k: np.ndarray
    j: np.ndarray
    label: np.ndarray
    shape: tuple[int, int, int]


def _e_step(obs: _Observed, prior: np.ndarray, confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior over true classes per pattern, and each pattern's log marginal likelihood."""
    n_pat, _, n_cls = obs.shape
    per_label = np.log(confusion)[obs.j, :, obs.label]  # labels x classes
    log_joint = np.log(prior)[None, :] + np.stack(
        [np.bincount(obs.k, weights=per_label[:, c], minlength=n_pat) for c in range(n_cls)], axis=1)
    top = log_joint.max(axis=1, keepdims=True)
    joint = np.exp(log_joint - top)
    norm = joint.sum(axis=1, keepdims=True)
    return joint / norm, (top + np.log(norm)).ravel()


def _m_step(obs: _Observed, weights: np.ndarray, post: np.ndarray,
            smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """MAP prior and confusion matrices given soft class assignments of the patterns."""
    _, n_ann, n_cls = obs.shape
    weighted = post * weights[:, None]
    prior = weighted.sum(axis=0) + smoothing
    prior = prior / prior.sum()
    cell = obs.j * n_cls + obs.label  # (annotator, given label)
    tally = np.stack([np.bincount(cell, weights=weighted[obs.k, c], minlength=n_ann * n_cls)
                      for c in range(n_cls)], axis=1)  # rows (annotator, given label), columns true class
    tally = tally.reshape(n_ann, n_cls, n_cls).transpose(0, 2, 1) + smoothing  # annotator x true x given
    row = tally.sum(axis=2, keepdims=True)
    confusion = np.divide(tally, row, out=np.full_like(tally, 1.0 / tally.shape[2]), where=row > 0)
    return prior, confusion


def annotator_accuracy(fit: DawidSkeneFit) -> np.ndarray:
    """Per annotator: probability that their label equals the true class,
    ``sum_z prior_z * confusion[z, z]``."""
    return np.einsum("c,jcc->j", fit.prior, fit.confusion)


def flip_probability(posterior: np.ndarray, final: np.ndarray, tie: int = 2) -> np.ndarray:
    """Probability that each final chosen/rejected label is the wrong way round.

    For a final label A (or B): P(true = B) (or A) plus half of P(true = tie), since a true
    tie makes either orientation right half the time. NaN where the final label is a tie
    (a tie is not a chosen/rejected label). ``final`` holds codes 0 = A, 1 = B, ``tie`` = tie.
    """
    posterior = np.asarray(posterior, dtype="float64")
    final = np.asarray(final, dtype=np.int64)
    other = np.where(final == 0, 1, 0)
    rows = np.arange(len(final))
    flip = posterior[rows, other] + 0.5 * posterior[:, tie]
    return np.where(final == tie, np.nan, flip)
