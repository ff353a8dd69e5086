"""Dawid–Skene EM on planted truth and on the real PandaLM labels, used alone (no table)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefaudit.errors import ConfigError, SchemaError
from prefaudit.stats.dawid_skene import (
    _unique_patterns,
    annotator_accuracy,
    fit_dawid_skene,
    fit_dawid_skene_triples,
    flip_probability,
)
from prefaudit.stats.reliability import both_orientations

ACCURACIES = np.array([0.95, 0.9, 0.8, 0.65, 0.55])


def planted(n_pairs: int = 2000, accuracies: np.ndarray = ACCURACIES, missing: float = 0.1,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binary truth and a label matrix from annotators with known accuracies (NaN = missing)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_pairs)
    correct = rng.random((n_pairs, len(accuracies))) < accuracies
    labels = np.where(correct, truth[:, None], 1 - truth[:, None]).astype("float64")
    labels[rng.random(labels.shape) < missing] = np.nan
    empty = np.isnan(labels).all(axis=1)
    labels[empty, 0] = truth[empty]
    return truth, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_planted_accuracies_and_beats_majority_vote(seed):
    truth, labels = planted(seed=seed)
    fit = fit_dawid_skene(labels)
    assert fit.converged and 1 < fit.n_iter < 200
    assert np.abs(annotator_accuracy(fit) - ACCURACIES).max() < 0.05
    assert np.argmin(annotator_accuracy(fit)) == 4
    consensus = (fit.posterior.argmax(axis=1) == truth).mean()
    a, b = (labels == 0).sum(axis=1), (labels == 1).sum(axis=1)
    majority = ((a > b) == (truth == 0)) * (a != b) + 0.5 * (a == b)  # level votes: a coin flip
    assert consensus > majority.mean() + 0.02
    assert fit.prior[2] == 0 and (fit.posterior[:, 2] == 0).all()  # no one said tie: no tie class


def test_flip_rate_of_a_planted_15_percent_flipped_label_set():
    truth, labels = planted(seed=4)
    rng = np.random.default_rng(4)
    final = truth.copy()
    flipped = rng.choice(len(final), int(0.15 * len(final)), replace=False)
    final[flipped] = 1 - final[flipped]
    # The shipped labels are one more labeller's output, so they are part of what the model sees.
    fit = fit_dawid_skene(np.column_stack([labels, final]))
    estimate = float(np.nanmean(flip_probability(fit.posterior, final)))
    assert estimate == pytest.approx(0.15, abs=0.03)
    assert annotator_accuracy(fit)[-1] == pytest.approx(0.85, abs=0.03)


def test_flip_probability_counts_a_true_tie_as_half_and_skips_final_ties():
    posterior = np.array([[0.7, 0.1, 0.2], [0.7, 0.1, 0.2], [0.2, 0.2, 0.6]])
    flip = flip_probability(posterior, np.array([0, 1, 2]))
    assert flip[0] == pytest.approx(0.1 + 0.1)
    assert flip[1] == pytest.approx(0.7 + 0.1)
    assert np.isnan(flip[2])


def test_real_pandalm_labels_give_sharp_posteriors_for_unanimous_items(sample_dir):
    records = json.loads((sample_dir / "pandalm_testset_v1.json").read_text(encoding="utf-8"))
    raw = np.array([[r[f"annotator{k}"] for k in (1, 2, 3)] for r in records])
    labels = np.select([raw == 1, raw == 2, raw == 0], [0, 1, 2]).astype("float64")
    fit = fit_dawid_skene(labels)
    unanimous = (labels == labels[:, :1]).all(axis=1)
    assert unanimous.sum() == 879  # the dataset README
    assert (fit.posterior[unanimous].argmax(axis=1) == labels[unanimous, 0]).all()
    assert fit.posterior[unanimous].max(axis=1).min() > fit.posterior[~unanimous].max(axis=1).max()
    assert ((annotator_accuracy(fit) > 0.9) & (annotator_accuracy(fit) < 1)).all()
    assert np.allclose(fit.confusion.sum(axis=2), 1.0)


def test_fit_is_deterministic_and_independent_of_pair_order():
    _, labels = planted(n_pairs=500, seed=9)
    perm = np.random.default_rng(9).permutation(len(labels))
    a, b = fit_dawid_skene(labels), fit_dawid_skene(labels[perm])
    assert a.n_iter == b.n_iter and np.array_equal(a.confusion, b.confusion)
    assert np.array_equal(a.posterior[perm], b.posterior)
    assert a.log_likelihood == b.log_likelihood < 0


def test_iteration_cap_is_reported_as_not_converged():
    _, labels = planted(n_pairs=500, seed=2)
    fit = fit_dawid_skene(labels, max_iter=2)
    assert fit.n_iter == 2 and not fit.converged


def test_bad_input_raises_specific_errors():
    with pytest.raises(SchemaError, match="row 0, column 1"):
        fit_dawid_skene(np.array([[0.0, 5.0]]))
    with pytest.raises(ConfigError, match="every pair"):
        fit_dawid_skene(np.array([[0.0, 1.0], [np.nan, np.nan]]))
    with pytest.raises(ConfigError, match="max_iter"):
        fit_dawid_skene(np.array([[0.0, 1.0]]), max_iter=0)


@pytest.mark.parametrize("n_annotators", [5, 40])  # one packed key per pattern, and two
def test_fit_from_triples_equals_the_dense_fit_and_swap_ab_equals_both_orientations(n_annotators):
    accuracies = np.linspace(0.95, 0.55, n_annotators)
    _, labels = planted(1500, accuracies, missing=0.6, seed=4)
    labels[::7, 0] = 2.0  # some ties
    rows, cols = np.nonzero(~np.isnan(labels))
    codes = labels[rows, cols].astype(np.int64)
    codes_matrix = np.where(np.isnan(labels), -1, labels).astype(np.int64)
    assert len(np.unique(codes_matrix, axis=0)) > 100  # patterns to sort, not a handful
    for swap_ab, dense in ((False, labels), (True, both_orientations(labels))):
        want = fit_dawid_skene(dense, max_iter=60)
        got = fit_dawid_skene_triples(rows, cols, codes, labels.shape, max_iter=60, swap_ab=swap_ab)
        np.testing.assert_array_equal(got.posterior, want.posterior[:len(labels)])
        np.testing.assert_array_equal(got.confusion, want.confusion)
        np.testing.assert_array_equal(got.prior, want.prior)
        assert (got.n_iter, got.log_likelihood) == (want.n_iter, want.log_likelihood)
    # the distinct label patterns EM runs on, in np.unique's order, without the dense matrix
    patterns, inverse, counts = _unique_patterns(rows, cols, codes, labels.shape)
    want_patterns, want_inverse, want_counts = np.unique(codes_matrix, axis=0, return_inverse=True,
                                                         return_counts=True)
    dense = np.full((patterns.n, n_annotators), -1)
    dense[patterns.k, patterns.j] = patterns.label
    np.testing.assert_array_equal(dense, want_patterns)
    np.testing.assert_array_equal(np.lexsort((patterns.j, patterns.k)), np.arange(len(patterns.k)))
    np.testing.assert_array_equal(inverse, want_inverse.ravel())
    np.testing.assert_array_equal(counts, want_counts)
