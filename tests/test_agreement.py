"""Agreement analyzer: published PandaLM figures, planted defects, single-label data, properties."""

from __future__ import annotations

import json
import time
import tracemalloc

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from prefaudit import load
from prefaudit.analyzers.agreement import analyze_agreement
from prefaudit.audit import audit
from prefaudit.cli import main
from prefaudit.errors import ConfigError, SchemaError
from prefaudit.schema import label_matrix, presented_label_matrix, to_pairs
from prefaudit.stats import bootstrap, reliability
from prefaudit.stats.dawid_skene import fit_dawid_skene
from prefaudit.stats.simulate import simulate_judgements

FIXED = ["agreement.raw_agreement", "agreement.krippendorff_alpha", "agreement.krippendorff_alpha_low",
         "agreement.krippendorff_alpha_high", "agreement.fleiss_kappa", "agreement.flip_rate"]


@pytest.fixture(scope="module")
def pandalm(sample_dir):
    table, _ = load(sample_dir / "pandalm_testset_v1.json")
    return table


@pytest.fixture(scope="module")
def pandalm_result(pandalm):
    return analyze_agreement(pandalm, n_bootstrap=500)


def pandalm_source_matrix(path) -> np.ndarray:
    """PandaLM labels straight from the JSON, coded 0 = response1, 1 = response2, 2 = tie."""
    records = json.loads(path.read_text(encoding="utf-8"))
    raw = np.array([[r[f"annotator{k}"] for k in (1, 2, 3)] for r in records])
    return np.select([raw == 1, raw == 2, raw == 0], [0, 1, 2]).astype("float64")


def test_pandalm_reproduces_published_kappas_fleiss_and_raw_agreement(pandalm_result):
    # the published figures code the labels as the annotators saw them (response1 = first)
    kappa = pandalm_result.tables["cohen_kappa_as_presented"]
    assert kappa.loc["annotator1", "annotator2"] == pytest.approx(0.852, abs=0.005)
    assert kappa.loc["annotator1", "annotator3"] == pytest.approx(0.879, abs=0.005)
    assert kappa.loc["annotator2", "annotator3"] == pytest.approx(0.862, abs=0.005)
    m = pandalm_result.metrics
    assert m["fleiss_kappa_as_presented"].value == pytest.approx(0.864, abs=0.0005)
    # orientation-free: near the as-presented values here (the first position wins 47 % of labels)
    assert m["fleiss_kappa"].value == pytest.approx(0.8645, abs=0.0005)
    assert abs(m["mean_cohen_kappa"].value - m["mean_cohen_kappa_as_presented"].value) < 0.001
    assert m["raw_agreement"].value == pytest.approx(0.920, abs=0.0005)
    assert m["n_annotators"].value == 3 and m["n_pairs_multi"].value == 999


def test_pandalm_alpha_equals_krippendorff_package(pandalm, pandalm_result, sample_dir):
    source = pandalm_source_matrix(sample_dir / "pandalm_testset_v1.json")
    swapped = np.select([source == 0, source == 1], [1, 0], source)
    expected = krippendorff.alpha(reliability_data=np.vstack([source, swapped]).T,
                                  level_of_measurement="nominal")
    alpha = pandalm_result.metrics["krippendorff_alpha"]
    assert alpha.value == pytest.approx(expected, abs=1e-9)
    assert alpha.value == pytest.approx(0.8645, abs=1e-4)
    assert alpha.low < alpha.value < alpha.high
    presented = pandalm_result.metrics["krippendorff_alpha_as_presented"]
    assert presented.value == pytest.approx(
        krippendorff.alpha(reliability_data=source.T, level_of_measurement="nominal"), abs=1e-6)
    assert presented.value == pytest.approx(0.8642, abs=1e-4)
    assert presented.low < presented.value < presented.high
    # the orientation-free alpha does not depend on the sort that names response A
    matrix = label_matrix(pandalm).to_numpy()
    assert reliability.krippendorff_alpha(reliability.both_orientations(matrix)) == pytest.approx(
        expected, abs=1e-9)
    assert reliability.krippendorff_alpha(source) == pytest.approx(
        krippendorff.alpha(reliability_data=source.T, level_of_measurement="nominal"), abs=1e-9)


def test_alpha_matches_package_with_missing_labels(sample_dir):
    source = pandalm_source_matrix(sample_dir / "pandalm_testset_v1.json")
    rng = np.random.default_rng(3)
    source[rng.random(source.shape) < 0.3] = np.nan
    expected = krippendorff.alpha(reliability_data=source.T, level_of_measurement="nominal")
    assert reliability.krippendorff_alpha(source) == pytest.approx(expected, abs=1e-9)
    assert np.isnan(reliability.fleiss_kappa(reliability.category_counts(source)))


def test_orientation_does_not_depend_on_which_judgement_comes_first(pandalm, pandalm_result):
    reordered = pandalm.iloc[::-1].reset_index(drop=True)
    again = analyze_agreement(reordered, n_bootstrap=500)
    for name in ("krippendorff_alpha", "fleiss_kappa", "mean_cohen_kappa", "flip_rate",
                 "krippendorff_alpha_as_presented"):
        assert again.metrics[name] == pandalm_result.metrics[name], name


def test_kappa_meanings_warn_about_skewed_marginals(pandalm_result):
    for name in ("krippendorff_alpha", "fleiss_kappa", "mean_cohen_kappa"):
        assert "skewed label shares" in pandalm_result.metrics[name].meaning
    assert "rDPO" in pandalm_result.metrics["flip_rate"].meaning


def test_pair_data_posterior_refers_to_the_to_pairs_label(pandalm, pandalm_result):
    data = pandalm_result.pair_data
    pairs = to_pairs(pandalm).set_index("pair_id").loc[data.index]
    text_a = [min(c, r) for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True)]
    expected_final = np.where(pairs["tie"], 2, np.where(pairs["chosen"] == text_a, 0, 1))
    assert (data["final_label"].to_numpy() == expected_final).all()
    rows = np.arange(len(data))
    posterior = data[["p_a", "p_b", "p_tie"]].to_numpy()
    assert np.allclose(posterior.sum(axis=1), 1.0)
    assert np.allclose(data["consensus_posterior"], posterior[rows, expected_final])
    split = data["majority_share"] < 1
    assert split.sum() == 120  # the dataset README: 120 items with a 2-vs-1 disagreement
    assert data.loc[split, "consensus_posterior"].max() < data.loc[~split, "consensus_posterior"].min()
    contested = data["contested"]
    assert not (contested & ~split).any() and contested.sum() >= 100
    # the 2-vs-1 splits left unflagged are "tie, tie, X": annotators rarely call a tie wrongly
    assert (data.loc[split & ~contested, "final_label"] == 2).all()


def test_planted_random_annotator_is_found_on_real_labels(pandalm):
    rng = np.random.default_rng(7)
    noisy = pandalm.copy()
    rows = (noisy["annotator"] == "annotator2").to_numpy() & (rng.random(len(noisy)) < 0.6)
    noisy.loc[rows, ["chosen", "rejected"]] = noisy.loc[rows, ["rejected", "chosen"]].to_numpy()
    noisy.loc[rows, "tie"] = False
    clean = analyze_agreement(pandalm, n_bootstrap=200)
    res = analyze_agreement(noisy, n_bootstrap=200)
    ann = res.tables["annotators"]
    assert ann.index[-1] == "annotator2" and ann.loc["annotator2", "rank"] == 3
    assert ann.loc["annotator2", "ds_accuracy"] < 0.6 < ann.loc["annotator1", "ds_accuracy"]
    assert res.metrics["krippendorff_alpha"].high < clean.metrics["krippendorff_alpha"].low


def test_planted_even_splits_are_flagged(pandalm):
    ids = pandalm["pair_id"].unique()
    labels = label_matrix(pandalm)
    split_ids = list(labels.index[labels["annotator1"] != labels["annotator2"]][:5])
    assert len(split_ids) == 5
    trimmed = pandalm[~(pandalm["pair_id"].isin(split_ids) & (pandalm["annotator"] == "annotator3"))]
    res = analyze_agreement(trimmed, n_bootstrap=100)
    flags = res.pair_flags[res.pair_flags["reason"] == "contested"]
    assert set(split_ids) <= set(flags["pair_id"])
    assert flags.set_index("pair_id").loc[split_ids, "detail"].str.startswith("even split").all()
    assert res.metrics["fleiss_kappa"].value is None
    assert any("fleiss_kappa" in n for n in res.notes)
    assert len(ids) == len(res.pair_data)


def test_simulation_flip_rate_matches_realized_majority_errors():
    table, truth = simulate_judgements(2000, [0.8, 0.75, 0.7], missing=0.0, seed=11)
    res = analyze_agreement(table, n_bootstrap=300)
    data = res.pair_data
    decided = data["final_label"] != 2
    realized = float((data["final_label"] != truth)[decided].mean())
    assert 0.12 < realized < 0.19  # three weak annotators: the majority is wrong about 15% of the time
    flip = res.metrics["flip_rate"]
    assert flip.value == pytest.approx(realized, abs=0.03)
    assert flip.low < flip.value < flip.high


def test_simulation_consensus_beats_majority_and_ranks_the_weak_annotator_last():
    accuracies = [0.95, 0.9, 0.8, 0.65, 0.55]
    table, truth = simulate_judgements(2000, accuracies, missing=0.1, seed=5)
    res = analyze_agreement(table, n_bootstrap=200)
    ann = res.tables["annotators"]
    assert ann.index[-1] == "ann5"
    for j, acc in enumerate(accuracies):
        assert ann.loc[f"ann{j + 1}", "ds_accuracy"] == pytest.approx(acc, abs=0.05)
    consensus = float((res.pair_data["consensus_label"] == truth).mean())
    final = res.pair_data["final_label"]
    majority = float(((final == truth) + 0.5 * (final == 2)).mean())  # level votes: a coin flip
    assert consensus > majority + 0.02
    flagged = res.pair_flags[res.pair_flags["reason"] == "consensus_disagrees_with_final_label"]
    wrong_final = set(final.index[final != truth])  # a level vote gives a tie: always wrong here
    assert len(flagged) and len(set(flagged["pair_id"]) & wrong_final) / len(flagged) > 0.8


def test_single_label_table_gives_no_fake_numbers(sample_dir):
    table, _ = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    res = analyze_agreement(table)
    for name in ("raw_agreement", "krippendorff_alpha", "fleiss_kappa", "flip_rate", "contested_share"):
        assert res.metrics[name].value is None, name
    assert any("cannot be computed" in n for n in res.notes)
    assert res.pair_data is None and res.pair_flags.empty

    pair_ids = table["pair_id"].unique()
    proxy = pd.Series(np.linspace(0.0, 0.4, len(pair_ids)), index=pair_ids, name="length.noise_proxy")
    with_proxy = analyze_agreement(table, noise_proxy=proxy, n_bootstrap=300)
    flip = with_proxy.metrics["flip_rate"]
    assert flip.value == pytest.approx(0.2)
    assert flip.low < 0.2 < flip.high
    assert with_proxy.params["noise_proxy"] == "length.noise_proxy"
    assert any("length.noise_proxy" in n for n in with_proxy.notes)
    assert with_proxy.metrics["krippendorff_alpha"].value is None
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        analyze_agreement(table, noise_proxy=proxy * 5)


def test_bad_parameters_raise_config_errors(pandalm):
    with pytest.raises(ConfigError, match="n_bootstrap"):
        analyze_agreement(pandalm, n_bootstrap=0)
    with pytest.raises(ConfigError, match="contested_threshold"):
        analyze_agreement(pandalm, contested_threshold=1.5)
    with pytest.raises(SchemaError, match="row 1, column 0"):
        reliability.category_counts(np.array([[0.0, 1.0], [3.0, np.nan]]))


def test_audit_end_to_end_carries_fixed_metrics_and_contested_flags(pandalm):
    result = audit(pandalm, ["agreement"], seed=3)
    for key in FIXED:
        assert result.metrics[key] is not None, key
    flags = result.pair_flags()
    n_contested = int(result.results["agreement"].pair_data["contested"].sum())
    assert n_contested >= 100 and (flags["reason"] == "contested").sum() == n_contested


def test_cli_audit_writes_agreement_metrics_and_contested_pairs(sample_dir, tmp_path, capsys):
    code = main(["audit", str(sample_dir / "pandalm_testset_v1.json"), "--analyzers", "agreement",
                 "--out", str(tmp_path), "--no-gate", "--no-pdf"])
    assert code == 0
    saved = json.loads((tmp_path / "audit.json").read_text())
    assert set(FIXED) <= set(saved["metrics"])
    assert saved["metrics"]["agreement.fleiss_kappa_as_presented"] == pytest.approx(0.864, abs=0.0005)
    csv = pd.read_csv(tmp_path / "pair_flags.csv")
    contested = csv[csv["reason"] == "contested"]
    assert len(contested) >= 100 and (contested["analyzer"] == "agreement").all()


def test_seeded_results_are_identical_and_seed_matters(pandalm, pandalm_result):
    again = analyze_agreement(pandalm, n_bootstrap=500)
    assert again.flat_metrics() == pandalm_result.flat_metrics()
    pd.testing.assert_frame_equal(again.pair_data, pandalm_result.pair_data)
    other = analyze_agreement(pandalm, n_bootstrap=500, seed=1)
    assert other.metrics["krippendorff_alpha"].low != pandalm_result.metrics["krippendorff_alpha"].low
    assert other.metrics["krippendorff_alpha"].value == pandalm_result.metrics["krippendorff_alpha"].value


# ---- properties ---------------------------------------------------------------------------

label_cells = st.sampled_from([0.0, 1.0, 2.0, np.nan])
matrices = st.tuples(st.integers(2, 40), st.integers(2, 5)).flatmap(
    lambda shape: arrays("float64", shape, elements=label_cells))


@settings(max_examples=150, deadline=None)
@given(matrices)
def test_alpha_matches_krippendorff_and_ignores_ab_relabelling(labels):
    alpha = reliability.krippendorff_alpha(labels)
    swapped = np.where(labels == 2, 2, 1 - labels)
    assert np.isclose(reliability.krippendorff_alpha(swapped), alpha, equal_nan=True, atol=1e-12)
    counts = reliability.category_counts(labels)
    pairable = counts.sum(axis=1) >= 2
    if pairable.any() and (counts[pairable].sum(axis=0) > 0).sum() >= 2:
        expected = krippendorff.alpha(reliability_data=labels.T, level_of_measurement="nominal")
        assert alpha == pytest.approx(expected, abs=1e-9)
    else:
        assert np.isnan(alpha)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(2, 5)), min_size=2, max_size=40)
       .filter(lambda units: len({u[0] for u in units}) >= 2))
def test_perfect_agreement_gives_alpha_one(units):
    labels = np.full((len(units), 5), np.nan)
    for i, (value, n) in enumerate(units):
        labels[i, :n] = value
    assert reliability.krippendorff_alpha(labels) == pytest.approx(1.0)
    assert reliability.raw_agreement(reliability.category_counts(labels)) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(30, 300), st.integers(0, 10_000), st.integers(0, 2**31 - 1))
def test_bootstrap_interval_contains_estimate_and_ignores_pair_order(n_pairs, data_seed, seed):
    table, _ = simulate_judgements(n_pairs, [0.9, 0.75, 0.6], missing=0.2, tie_rate=0.1, seed=data_seed)
    counts = reliability.category_counts(label_matrix(table).to_numpy())
    parts = reliability.alpha_parts(counts)
    alpha = float(reliability.alpha_from_totals(parts.sum(axis=0)))
    sums = bootstrap.bootstrap_sums(parts, 400, seed)
    low, high = bootstrap.percentile_interval(reliability.alpha_from_totals(sums))
    assert low <= alpha <= high
    perm = np.random.default_rng(data_seed).permutation(len(parts))
    assert np.array_equal(bootstrap.bootstrap_sums(parts[perm], 400, seed), sums)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_permuting_pairs_changes_nothing(data_seed):
    table, _ = simulate_judgements(150, [0.9, 0.8, 0.6, 0.55], missing=0.15, tie_rate=0.1, seed=data_seed)
    order = np.random.default_rng(data_seed).permutation(table["pair_id"].unique())
    shuffled = table.set_index("pair_id").loc[order].reset_index()
    a = analyze_agreement(table, n_bootstrap=200)
    b = analyze_agreement(shuffled, n_bootstrap=200)
    assert a.flat_metrics() == pytest.approx(b.flat_metrics(), abs=1e-12, nan_ok=True)
    pd.testing.assert_frame_equal(a.pair_data, b.pair_data.loc[a.pair_data.index], atol=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_orientation_free_coefficients_ignore_which_response_is_a(sample_dir, data):
    """Swapping A and B on any subset of real PandaLM pairs leaves the orientation-free
    alpha, Fleiss' and Cohen's kappa unchanged (checked against the values of the unswapped file)."""
    source = pandalm_source_matrix(sample_dir / "pandalm_testset_v1.json")
    swap = np.array(data.draw(st.lists(st.booleans(), min_size=len(source), max_size=len(source))))
    recoded = np.where(swap[:, None], reliability.swap_ab(source), source)
    for labels in (source, recoded):
        both = reliability.both_orientations(labels)
        assert reliability.krippendorff_alpha(both) == pytest.approx(0.8645295734, abs=1e-9)
        assert (reliability.fleiss_kappa(reliability.category_counts(both))
                == pytest.approx(0.8645069686, abs=1e-9))
        kappa, _ = reliability.cohen_kappa_matrix(both)
        assert kappa[0, 1] == pytest.approx(0.852318, abs=1e-6)
        parts = reliability.symmetric_alpha_parts(reliability.category_counts(labels)).sum(axis=0)
        assert float(reliability.alpha_from_totals(parts)) == pytest.approx(0.8645295734, abs=1e-9)


def messy_simulation() -> pd.DataFrame:
    """Simulated judgements with missing labels, ties, an annotator judging a pair twice (not
    marked as a repeat) and judgements of unknown presentation order."""
    table, _ = simulate_judgements(600, [0.9, 0.8, 0.7, 0.6, 0.55], missing=0.4, tie_rate=0.1, seed=5)
    table = pd.concat([table, table.iloc[[3, 10, 20]].assign(tie=True)], ignore_index=True)
    rng = np.random.default_rng(5)
    table["chosen_shown_first"] = pd.array(rng.random(len(table)) < 0.5, dtype="boolean")
    table.loc[rng.random(len(table)) < 0.1, "chosen_shown_first"] = pd.NA
    return table


def test_analyzer_equals_the_label_matrix_functions_it_avoids_building():
    """The analyzer works on label triples; every number equals the dense label-matrix way."""
    table = messy_simulation()
    res = analyze_agreement(table, n_bootstrap=200)
    labels = label_matrix(table).to_numpy()
    both = reliability.both_orientations(labels)
    fit = fit_dawid_skene(both)
    np.testing.assert_array_equal(res.pair_data[["p_a", "p_b", "p_tie"]].to_numpy(),
                                  fit.posterior[:len(labels)])
    np.testing.assert_array_equal(res.tables["cohen_kappa"].to_numpy(),
                                  reliability.cohen_kappa_matrix(both)[0])
    loo, n_compared = reliability.leave_one_out_agreement(labels)
    annotators = res.tables["annotators"].loc[label_matrix(table).columns]
    np.testing.assert_array_equal(annotators["loo_majority_agreement"].to_numpy(), loo)
    np.testing.assert_array_equal(annotators["n_loo_compared"].to_numpy(), n_compared)
    counts = reliability.category_counts(labels)
    assert res.metrics["raw_agreement"].value == reliability.raw_agreement(counts)
    # the package on the full two-orientation matrix; leaving out pairs with one label (exact zeros
    # in its sum) changes the summation order only: a few units in the last place
    package = krippendorff.alpha(reliability_data=both.T, level_of_measurement="nominal")
    assert res.metrics["krippendorff_alpha"].value == pytest.approx(package, rel=1e-13)
    presented = presented_label_matrix(table).to_numpy()
    known = (~np.isnan(presented)).sum(axis=1) >= 2
    assert res.metrics["krippendorff_alpha_as_presented"].value == pytest.approx(
        krippendorff.alpha(reliability_data=presented[known].T, level_of_measurement="nominal"), rel=1e-13)
    np.testing.assert_array_equal(res.tables["cohen_kappa_as_presented"].to_numpy(),
                                  reliability.cohen_kappa_matrix(presented)[0])


def wide_panel(n_pairs: int, n_annotators: int = 200, per_pair: int = 3) -> pd.DataFrame:
    """A crowd: each pair judged by 3 of 200 annotators of accuracy 0.55 to 0.95 (seeded)."""
    rng = np.random.default_rng(n_pairs)
    pair = np.repeat(np.arange(n_pairs), per_pair)
    annotator = np.concatenate([rng.choice(n_annotators, per_pair, replace=False) for _ in range(n_pairs)])
    truth_a = rng.random(n_pairs) < 0.5
    a_wins = np.where(rng.random(len(pair)) < rng.uniform(0.55, 0.95, n_annotators)[annotator],
                      truth_a[pair], ~truth_a[pair])
    return pd.DataFrame({"pair_id": [f"p{i}" for i in pair], "prompt": "q",
                         "chosen": np.where(a_wins, "response A", "response B"),
                         "rejected": np.where(a_wins, "response B", "response A"),
                         "annotator": [f"ann{j:03d}" for j in annotator], "tie": False, "strength": np.nan,
                         "source": "sim"})


def test_a_wide_panel_never_builds_the_pairs_x_annotators_matrix():
    """From 2,000 to 8,000 pairs of a 200-annotator crowd the dense label matrix grows by
    9 MiB (and the analysis used to hold several copies); the analysis' peak grows by about 1."""
    peaks = []
    for n_pairs in (2_000, 8_000):
        table = wide_panel(n_pairs)
        tracemalloc.start()
        try:
            res = analyze_agreement(table, n_bootstrap=10, ds_max_iter=30)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert res.metrics["n_annotators"].value == 200 and res.metrics["mean_labels_per_pair"].value == 3
    dense_growth = 6_000 * 200 * 8
    assert peaks[1] - peaks[0] < dense_growth / 4, [p / 2**20 for p in peaks]


@pytest.mark.slow
def test_ten_thousand_pairs_by_two_hundred_annotators_take_seconds():
    """Took 467 s with the dense label matrix; the triples make it seconds (measured 7 CPU s)."""
    table, truth = simulate_judgements(10_000, np.linspace(0.95, 0.55, 200), missing=0.1, tie_rate=0.1,
                                       seed=0)
    start = time.process_time()
    res = analyze_agreement(table)
    assert time.process_time() - start < 60
    consensus = res.pair_data["consensus_label"].reindex(truth.index)
    assert (consensus == truth).mean() > 0.99  # 180 labels a pair: the consensus is the truth
