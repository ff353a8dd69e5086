"""The margins analyzer on real pair tables: planted margins (precomputed scores), ties,
annotator support, selection, the audit and CLI path, and a planted swap under real SmolLM2."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from prefaudit.analyzers.margins import analyze_margins, select_by_margin
from prefaudit.audit import audit
from prefaudit.cli import main
from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.scoring.models import load_reference
from prefaudit.testing import tiny_causal_lm

FIXED = ("reference_accuracy", "median_margin", "share_reference_prefers_rejected", "share_chosen_ood")


@pytest.fixture(scope="module")
def hh(sample_dir) -> pd.DataFrame:
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


@pytest.fixture(scope="module")
def planted(hh):
    """Scores for the 300 real HH pairs: chosen wins by 10 nats except for planted groups."""
    ids = hh["pair_id"].to_numpy()
    rng = np.random.default_rng(0)
    c_pt = -2.0 + 0.2 * rng.standard_normal(len(ids))
    r_pt = c_pt - 0.5
    wrong, ood, near = ids[10:30], ids[50:55], ids[100:106]
    idx = pd.Index(ids)
    r_pt[idx.get_indexer(wrong)] += 1.5                   # rejected more likely: margin -20
    c_pt[idx.get_indexer(ood)] = -9.0                     # chosen far out of distribution
    r_pt[idx.get_indexer(ood)] = -2.0
    r_pt[idx.get_indexer(near)] = c_pt[idx.get_indexer(near)] - 0.01   # margin +0.2
    scores = pd.DataFrame({"chosen_logp": 20 * c_pt, "rejected_logp": 20 * r_pt,
                           "chosen_tokens": 20, "rejected_tokens": 20}, index=idx)
    return scores, set(wrong), set(ood), set(near)


def test_planted_margins_are_measured_and_flagged(hh, planted):
    scores, wrong, ood, near = planted
    res = analyze_margins(hh, scores=scores, beta=0.1)
    m = res.metrics
    assert next(iter(m)) == "reference_accuracy", "the report leads with the reference's agreement"
    assert m["reference_accuracy"].value == pytest.approx(275 / 300)
    assert m["reference_accuracy"].low < 275 / 300 < m["reference_accuracy"].high
    assert m["share_reference_prefers_rejected"].value == pytest.approx(25 / 300)
    assert m["median_margin"].value == pytest.approx(10.0)
    assert m["median_margin_per_token"].value == pytest.approx(0.5)
    assert m["share_chosen_ood"].value == pytest.approx(5 / 300)
    assert m["share_near_zero_margin"].value == pytest.approx(6 / 300)
    assert m["dpo_reward_scale"].value == pytest.approx(1.0)
    flags = res.pair_flags
    by = {r: set(flags.loc[flags["reason"] == r, "pair_id"]) for r in flags["reason"].unique()}
    assert by["reference_prefers_rejected"] == wrong | ood
    assert by["chosen_ood"] == ood
    assert by["near_zero_margin"] == near
    worst = flags[flags["reason"] == "reference_prefers_rejected"]["pair_id"].head(5)
    assert set(worst) == ood, "the largest wrong-way margins come first"
    assert res.pair_data.loc[sorted(wrong)[0], "reference_margin"] == pytest.approx(-20.0)
    assert sum(res.figures["margin_histogram"]["counts"]["pairs"]) == 300
    json.dumps(res.figures)


def test_margin_follows_length_when_per_token_logprob_is_equal(hh):
    """Summed log-probs reward the shorter answer: with equal per-token log-probs the margin is
    the length difference times that log-prob, so its correlation with length is -1."""
    tokens_c = hh["chosen"].str.split().str.len().to_numpy() + 1
    tokens_r = hh["rejected"].str.split().str.len().to_numpy() + 1
    scores = pd.DataFrame({"chosen_logp": -2.0 * tokens_c, "rejected_logp": -2.0 * tokens_r,
                           "chosen_tokens": tokens_c, "rejected_tokens": tokens_r},
                          index=hh["pair_id"].to_numpy())
    res = analyze_margins(hh, scores=scores)
    assert res.metrics["margin_length_correlation"].value == pytest.approx(-1.0)
    longer_chosen = (tokens_c > tokens_r).mean()
    assert res.metrics["share_reference_prefers_rejected"].value == pytest.approx(longer_chosen)


def test_ties_are_skipped_and_support_relation_measured(sample_dir):
    table = load(sample_dir / "pandalm_testset_v1.json").table
    pairs = to_pairs(table)
    untied = pairs[~pairs["tie"]]
    support = pd.Series(untied["vote_share"].to_numpy(), index=untied["pair_id"].to_numpy())
    rng = np.random.default_rng(1)
    margin = 10 * (support.to_numpy() - 0.8) + rng.standard_normal(len(untied))
    scores = pd.DataFrame({"chosen_logp": -50 + margin, "rejected_logp": -50.0,
                           "chosen_tokens": 25, "rejected_tokens": 25}, index=support.index)
    res = analyze_margins(table, scores=scores, support=support)
    assert res.metrics["n_ties_skipped"].value == 105
    assert res.metrics["n_pairs_scored"].value == len(untied) == 999 - 105
    assert res.metrics["margin_support_correlation"].value > 0.3
    shuffled = pd.Series(rng.permutation(support.to_numpy()), index=support.index)
    null = analyze_margins(table, scores=scores, support=shuffled).metrics["margin_support_correlation"].value
    assert abs(null) < 0.1
    assert any("tied" in n for n in res.notes)


def test_all_ties_leave_margins_unmeasured_with_a_note(hh, planted):
    res = analyze_margins(hh.assign(tie=True), scores=planted[0])
    assert res.metrics["n_pairs_scored"].value == 0 and res.metrics["n_ties_skipped"].value == 300
    assert "reference_accuracy" not in res.metrics and res.pair_data is None and res.pair_flags.empty
    assert any("not measured" in n for n in res.notes)


def test_bad_arguments_raise_config_errors(hh, planted):
    scores = planted[0]
    with pytest.raises(ConfigError, match="exactly one"):
        analyze_margins(hh)
    with pytest.raises(ConfigError, match="exactly one"):
        analyze_margins(hh, scores=scores, reference_model="smollm2")
    with pytest.raises(ConfigError, match=r"no row for 1 pair.*hh_rlhf_harmless_test_300.jsonl:7"):
        analyze_margins(hh, scores=scores.drop(index=hh["pair_id"].iloc[6]))
    with pytest.raises(ConfigError, match="chosen_tokens"):
        analyze_margins(hh, scores=scores.drop(columns="chosen_tokens"))
    with pytest.raises(ConfigError, match="beta"):
        analyze_margins(hh, scores=scores, beta=0)


def test_select_by_margin_drops_exact_quantiles(hh, planted):
    scores, wrong, ood, _ = planted
    res = analyze_margins(hh, scores=scores)
    kept = select_by_margin(res, drop_low=0.1, drop_high=0.05)
    assert len(kept) == 300 - 30 - 15
    assert not (wrong | ood) & set(kept), "the pairs the reference ranks the other way go first"
    assert list(kept) == [p for p in hh["pair_id"] if p in set(kept)], "original order kept"
    assert len(select_by_margin(res.pair_data, per_token=True, drop_low=0.5)) == 150
    assert list(select_by_margin(res)) == list(hh["pair_id"])
    with pytest.raises(ConfigError, match="drop_low"):
        select_by_margin(res, drop_low=0.6, drop_high=0.5)


def test_audit_and_cli_report_margins_with_a_local_model_dir(hh, sample_dir, tmp_path, capsys):
    model, tok = tiny_causal_lm(corpus=list(hh["prompt"].head(30)))
    model_dir = tmp_path / "tiny"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "hh12.jsonl"
    lines = (sample_dir / "hh_rlhf_harmless_test_300.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["audit", str(data), "--analyzers", "margins", "--reference-model", str(model_dir),
               "--max-length", "64", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
               "--no-gate", "--no-pdf"])
    assert rc == 0
    metrics = json.loads((out / "audit.json").read_text())["metrics"]
    for name in FIXED:
        assert f"margins.{name}" in metrics and metrics[f"margins.{name}"] is not None
    flags = pd.read_csv(out / "pair_flags.csv")
    assert (flags["analyzer"] == "margins").any()
    wrong = flags[flags["reason"] == "reference_prefers_rejected"]
    assert len(wrong) == round(metrics["margins.share_reference_prefers_rejected"] * 12)
    capsys.readouterr()
    rc = main(["audit", str(data), "--analyzers", "margins", "--reference-model", str(tmp_path / "missing"),
               "--out", str(out), "--no-gate", "--no-pdf"])
    err = capsys.readouterr().err
    assert rc == 2 and "no such folder" in err and "Traceback" not in err


def test_same_input_gives_the_same_numbers(hh, planted):
    a = audit(hh, ["margins"], options={"margins": {"scores": planted[0]}}, seed=3)
    b = audit(hh, ["margins"], options={"margins": {"scores": planted[0]}}, seed=3)
    assert a.metrics == b.metrics
    assert a.results["margins"].figures == b.results["margins"].figures


# ---------------------------------------------------------------- real SmolLM2-135M-Instruct


@pytest.fixture(scope="session")
def smollm2():
    return load_reference("smollm2")


@pytest.mark.slow
def test_smollm2_sees_planted_swaps(hh, smollm2, tmp_path_factory):
    """8 real chosen answers against their own words shuffled: the reference prefers the fluent
    one; swapping 3 pairs moves 'reference prefers rejected' up and flags exactly those."""
    words = hh["chosen"].str.split().str.len()
    pick = hh[(words >= 6) & (hh["prompt"].str.len() < 160)].assign(
        size=lambda d: d["prompt"].str.len() + d["chosen"].str.len()).nsmallest(8, "size")
    assert len(pick) == 8
    rng = random.Random(0)

    def shuffled(s: str) -> str:
        w = s.split()
        while w == s.split():
            rng.shuffle(w)
        return " ".join(w)

    table = pick.drop(columns="size").assign(rejected=pick["chosen"].map(shuffled)).reset_index(drop=True)
    cache = tmp_path_factory.mktemp("margins_cache")
    base = analyze_margins(table, reference_model=smollm2, max_length=48, cache_dir=cache, progress=False)
    assert base.metrics["share_reference_prefers_rejected"].value <= 1 / 8
    swapped_ids = set(table["pair_id"].iloc[[0, 3, 6]])
    swap = table["pair_id"].isin(swapped_ids)
    flipped = table.copy()
    flipped.loc[swap, ["chosen", "rejected"]] = table.loc[swap, ["rejected", "chosen"]].to_numpy()
    res = analyze_margins(flipped, reference_model=smollm2, max_length=48, cache_dir=cache, progress=False)
    before = base.metrics["share_reference_prefers_rejected"].value
    after = res.metrics["share_reference_prefers_rejected"].value
    assert after >= before + 2 / 8
    flagged = set(res.pair_flags.loc[res.pair_flags["reason"] == "reference_prefers_rejected", "pair_id"])
    assert swapped_ids <= flagged
    # the audit, given the alias, reuses the cached scores and reports the fixed names
    result = audit(flipped, ["margins"], options={"margins": {"reference_model": "smollm2", "max_length": 48,
                                                              "cache_dir": cache, "progress": False}})
    for name in FIXED:
        assert result.metrics[f"margins.{name}"] == pytest.approx(res.metrics[name].value)
