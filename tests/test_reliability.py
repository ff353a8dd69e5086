"""Reliability and bootstrap helpers on label triples: equal to direct per-pair computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from prefaudit.stats import bootstrap, reliability


def pandalm_labels(sample_dir, missing: float, seed: int = 0) -> np.ndarray:
    """The real PandaLM labels (0 = response1, 1 = response2, 2 = tie), three annotators,
    tiled to 12 annotator columns with shuffled rows and ``missing`` of the cells removed."""
    records = json.loads((sample_dir / "pandalm_testset_v1.json").read_text(encoding="utf-8"))
    raw = np.array([[r[f"annotator{k}"] for k in (1, 2, 3)] for r in records])
    labels = np.select([raw == 1, raw == 2, raw == 0], [0, 1, 2]).astype("float64")
    rng = np.random.default_rng(seed)
    wide = np.hstack([labels[rng.permutation(len(labels))] for _ in range(4)])
    wide[rng.random(wide.shape) < missing] = np.nan
    return wide


def triples(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(~np.isnan(labels))
    return rows, cols, labels[rows, cols].astype(np.int64)


@pytest.mark.parametrize("missing", [0.1, 0.85])  # many labels per row (matrix products), few (bincount)
def test_cohen_kappa_matrix_equals_sklearn_on_each_annotator_pair(sample_dir, missing):
    labels = pandalm_labels(sample_dir, missing)
    per_row = (~np.isnan(labels)).sum(axis=1)
    shared = per_row[per_row >= 2]
    few = (shared * shared).sum() <= 3 * len(shared) * labels.shape[1]
    assert few == (missing > 0.5)  # both ways of counting the contingency tables are exercised
    kappa, overlap = reliability.cohen_kappa_matrix(labels)
    seen = ~np.isnan(labels)
    np.testing.assert_array_equal(overlap, seen.T.astype(int) @ seen.astype(int))
    n = labels.shape[1]
    for j in range(n):
        assert kappa[j, j] == 1.0
        for k in range(j + 1, n):
            both = seen[:, j] & seen[:, k]
            want = cohen_kappa_score(labels[both, j], labels[both, k]) if both.sum() else np.nan
            assert kappa[j, k] == pytest.approx(want, abs=1e-12, nan_ok=True)
            assert kappa[k, j] == kappa[j, k]


def test_kappa_of_both_orientations_from_the_swapped_tables_equals_the_stacked_matrix(sample_dir):
    labels = pandalm_labels(sample_dir, 0.5)
    want = reliability.cohen_kappa_matrix(reliability.both_orientations(labels))
    got = reliability.cohen_kappa_triples(*triples(labels), labels.shape[1], both_orientations=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_leave_one_out_agreement_equals_a_row_by_row_count(sample_dir):
    labels = pandalm_labels(sample_dir, 0.4)[:300]
    agreement, n_compared = reliability.leave_one_out_agreement(labels)
    for j in range(labels.shape[1]):
        hits = compared = 0
        for row in labels:
            if np.isnan(row[j]):
                continue
            others = np.bincount(np.delete(row, j)[~np.isnan(np.delete(row, j))].astype(int), minlength=3)
            if others.max() == 0 or (others == others.max()).sum() > 1:
                continue
            compared += 1
            hits += int(others.argmax() == row[j])
        assert n_compared[j] == compared
        assert agreement[j] == (hits / compared if compared else pytest.approx(np.nan, nan_ok=True))


def test_group_rows_equals_numpy_unique_and_sizes_stand_for_repeated_rows():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, (5000, 5)) / 4.0
    distinct, sizes = bootstrap.group_rows(values)
    want_distinct, want_sizes = np.unique(values, axis=0, return_counts=True)
    np.testing.assert_array_equal(distinct, want_distinct)
    np.testing.assert_array_equal(sizes, want_sizes)
    weights = rng.integers(1, 5, len(values))
    repeated = np.repeat(values, weights, axis=0)
    np.testing.assert_array_equal(bootstrap.bootstrap_sums(values, 300, 7, sizes=weights),
                                  bootstrap.bootstrap_sums(repeated, 300, 7))
