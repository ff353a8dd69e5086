"""Judges analyzer: planted position bias on real pairs, swap consistency by hand count,
an AlpacaEval-shaped file where one system is always shown first, orientation-free properties."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefaudit import load
from prefaudit.analyzers.agreement import analyze_agreement
from prefaudit.analyzers.judges import analyze_judges
from prefaudit.audit import audit
from prefaudit.gate import apply_policy
from prefaudit.schema import to_pairs
from prefaudit.stats.length_stats import wilson_interval

POSITION_RULES = ("judges.first_position_share_low", "judges.first_position_share_high")


@pytest.fixture(scope="module")
def pandalm_records(sample_dir) -> list[dict]:
    return json.loads((sample_dir / "pandalm_testset_v1.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def real_pairs(sample_dir) -> pd.DataFrame:
    """1,000 distinct real (prompt, better, worse) pairs: PandaLM's non-tie majority pairs
    (each text pair once), then HH-RLHF."""
    pandalm, _ = load(sample_dir / "pandalm_testset_v1.json")
    hh, _ = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    pairs = to_pairs(pandalm)
    pairs = pd.concat([pairs[~pairs["tie"]], hh], ignore_index=True)
    key = [(p, *sorted((c, r)))
           for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], strict=True)]
    pairs = pairs[~pd.Series(key).duplicated().to_numpy()].head(1000)
    assert len(pairs) == 1000
    return pairs[["pair_id", "prompt", "chosen", "rejected"]]


def simulated_judge(pairs: pd.DataFrame, p_first: float, seed: int) -> pd.DataFrame:
    """One judge: each pair shown in a random order; with probability ``p_first`` the judge
    picks the first-shown answer regardless of content, else the dataset's better answer."""
    rng = np.random.default_rng(seed)
    better_first = rng.random(len(pairs)) < 0.5
    positional = rng.random(len(pairs)) < p_first
    picks_better = ~positional | better_first
    better, worse = pairs["chosen"].to_numpy(), pairs["rejected"].to_numpy()
    return pd.DataFrame({
        "pair_id": pairs["pair_id"].to_numpy(), "prompt": pairs["prompt"].to_numpy(),
        "chosen": np.where(picks_better, better, worse), "rejected": np.where(picks_better, worse, better),
        "annotator": "sim_judge", "tie": False, "strength": np.nan, "source": "simulated",
        # the chosen answer was shown first iff the judge picked the better and it was first,
        # or picked the worse (only by position, so the worse was first)
        "chosen_shown_first": np.where(picks_better, better_first, True),
    })


def position_outcomes(result) -> dict[str, str]:
    verdict = apply_policy(result)
    return {o.metric: o.status for o in verdict.outcomes if o.metric in POSITION_RULES}


def test_planted_position_bias_on_real_pairs_is_found_and_warned(real_pairs):
    table = simulated_judge(real_pairs, p_first=0.3, seed=0)
    result = audit(table, ["judges"])
    share = result.results["judges"].metrics["first_position_share"]
    k = int(table["chosen_shown_first"].sum())
    assert share.value == pytest.approx(k / 1000)
    assert (share.low, share.high) == pytest.approx(wilson_interval(k, 1000))
    assert share.low > 0.5 and share.value == pytest.approx(0.65, abs=0.04)  # 0.3 + 0.7 / 2
    outcomes = position_outcomes(result)
    assert outcomes["judges.first_position_share_low"] == "warn"
    assert any("shown first wins" in n and "generator" in n for n in result.results["judges"].notes)

    fair = audit(simulated_judge(real_pairs, p_first=0.0, seed=0), ["judges"])
    share = fair.results["judges"].metrics["first_position_share"]
    assert share.low < 0.5 < share.high
    assert set(position_outcomes(fair).values()) == {"pass"}
    assert not fair.results["judges"].notes or all("shown first wins" not in n
                                                   for n in fair.results["judges"].notes)


def alpaca_record(instruction: str, out_1: str, out_2: str, preference: float, annotator: str,
                  gen_1: str = "", gen_2: str = "") -> dict:
    rec = {"instruction": instruction, "input": "", "output_1": out_1, "output_2": out_2,
           "preference": preference, "annotator": annotator}
    if gen_1:
        rec.update(generator_1=gen_1, generator_2=gen_2)
    return rec


def test_swap_consistency_equals_hand_count(tmp_path: Path, real_pairs):
    """One judge judges each comparison twice, once in each order; it keeps its verdict in 60 %
    of comparisons and picks the first-shown answer otherwise."""
    rng = np.random.default_rng(1)
    pairs = real_pairs.head(200)
    keeps = rng.random(len(pairs)) < 0.6
    records, verdicts = [], []
    for (prompt, better, worse), keep in zip(pairs[["prompt", "chosen", "rejected"]].to_numpy(), keeps,
                                             strict=True):
        pair_verdicts = []
        for first, second in ((better, worse), (worse, better)):
            pick_first = first == better if keep else True
            records.append(alpaca_record(prompt, first, second, 1 if pick_first else 2, "judge"))
            pair_verdicts.append(first if pick_first else second)
        verdicts.append(pair_verdicts)
    path = tmp_path / "swaps.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    table, report = load(path)
    assert report.count("repeat_judgement") == len(pairs) and int(table["repeat"].sum()) == len(pairs)

    res = analyze_judges(table)
    hand = sum(a == b for a, b in verdicts)
    assert hand == keeps.sum()
    assert res.metrics["swap_consistency"].value == hand / len(pairs)
    first_wins = sum(r["preference"] == 1 for r in records)
    assert res.metrics["first_position_share"].value == first_wins / len(records)
    assert res.metrics["first_position_share"].value == pytest.approx(0.5 * 0.6 + 0.4, abs=0.05)
    assert res.tables["judges"].loc["judge", "n_repeats"] == len(pairs)
    # agreement counts the judge once per comparison (its first judgement): single-label data
    agreement = analyze_agreement(table, n_bootstrap=50)
    assert agreement.metrics["n_pairs_multi"].value == 0
    assert any(f"{len(pairs)} repeated judgement(s)" in n and "once per comparison" in n
               for n in agreement.notes)
    # each pair with inconsistent verdicts by a biased judge is flagged; consistent ones are not
    flagged = set(res.pair_flags["pair_id"])
    pair_ids = table.drop_duplicates("pair_id")["pair_id"].to_numpy()
    assert flagged == {p for p, k in zip(pair_ids, keeps, strict=True) if not k}


def test_alpacaeval_shaped_file_one_system_always_first(tmp_path: Path, real_pairs):
    """AlpacaEval layout (output_1/output_2, generator_1/2, preference 1/2/1.5, annotator):
    the strong model is always output_1 and wins ~90 %; three annotators mostly agree."""
    rng = np.random.default_rng(2)
    records = []
    for i, (prompt, better, worse) in enumerate(
            real_pairs.head(300)[["prompt", "chosen", "rejected"]].to_numpy()):
        strong_wins = rng.random() < 0.9
        weak = f"model_{i % 3}"
        for ann in ("a1", "a2", "a3"):
            roll = rng.random()
            pref = (1.5 if roll < 0.03 else (1 if strong_wins else 2) if roll < 0.93
                    else (2 if strong_wins else 1))
            records.append(alpaca_record(prompt, better, worse, pref, ann, "gpt4_turbo", weak))
    path = tmp_path / "alpaca_eval.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    result = audit(load(path).table, ["agreement", "judges"], seed=0)
    m = result.metrics
    assert m["agreement.krippendorff_alpha"] - m["agreement.krippendorff_alpha_as_presented"] > 0.2
    assert m["agreement.first_position_label_share"] > 0.75
    note = next(n for n in result.results["agreement"].notes if "as-presented alpha" in n)
    assert "shown first wins most comparisons" in note and "kappa paradox" in note
    gen = result.results["judges"].tables["generators"]
    assert gen.index[0] == "gpt4_turbo" and gen.loc["gpt4_turbo", "win_rate"] > 0.75
    assert m["judges.top_generator_chosen_share"] > 0.75
    assert m["judges.first_position_share_low"] > 0.75
    assert position_outcomes(result)["judges.first_position_share_low"] == "warn"
    per_judge = result.results["judges"].tables["judge_generator_win_rate"]
    assert (per_judge["gpt4_turbo"] > 0.75).all() and list(per_judge.index) == ["a1", "a2", "a3"]


def swap_records(records: list[dict], which: list[bool]) -> list[dict]:
    """PandaLM records with response1/response2 and the labels 1/2 exchanged where ``which``."""
    out = []
    for rec, swap in zip(records, which, strict=True):
        rec = dict(rec)
        if swap:
            rec["response1"], rec["response2"] = rec["response2"], rec["response1"]
            for k in ("annotator1", "annotator2", "annotator3"):
                rec[k] = {1: 2, 2: 1}.get(rec[k], rec[k])
        out.append(rec)
    return out


ORIENTATION_FREE = ("agreement.krippendorff_alpha", "agreement.krippendorff_alpha_low",
                    "agreement.krippendorff_alpha_high", "agreement.fleiss_kappa",
                    "agreement.mean_cohen_kappa", "agreement.raw_agreement", "agreement.tie_label_share",
                    "agreement.flip_rate",
                    "agreement.contested_share")


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.booleans(), min_size=200, max_size=200))
def test_swapping_responses_leaves_orientation_free_numbers_unchanged(pandalm_records, which):
    records = pandalm_records[:200]
    base = audit(load(pd.DataFrame(records), format="pandalm").table, ["agreement", "judges"], seed=0,
                 options={"agreement": {"n_bootstrap": 100}})
    swapped = audit(load(pd.DataFrame(swap_records(records, which)), format="pandalm").table,
                    ["agreement", "judges"], seed=0, options={"agreement": {"n_bootstrap": 100}})
    for name in ORIENTATION_FREE:
        assert swapped.metrics[name] == pytest.approx(base.metrics[name], abs=1e-12), name
    cols = ["n_judgements", "tie_rate", "n_length_compared", "longer_share"]
    pd.testing.assert_frame_equal(swapped.results["judges"].tables["judges"][cols],
                                  base.results["judges"].tables["judges"][cols])
    # the as-presented coding does follow the swap: first-shown wins become second-shown wins, so each
    # share equals the direct count of label 1 (response1, shown first, wins) among its file's A/B labels
    for recs, result in ((records, base), (swap_records(records, which), swapped)):
        labels = [r[k] for r in recs for k in ("annotator1", "annotator2", "annotator3") if r[k] in (1, 2)]
        assert result.metrics["judges.first_position_share"] == pytest.approx(labels.count(1) / len(labels))


def test_judges_runs_by_default_only_with_annotators_or_order(sample_dir, monkeypatch):
    monkeypatch.setattr(sys.modules["prefaudit.audit"], "DEFAULT_ANALYZERS", ("hygiene", "judges"))  # fast
    hh, _ = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    result = audit(hh)
    assert "judges" not in result.results and "names no annotator" in result.not_run["judges"]
    llmbar, _ = load(sample_dir / "llmbar_natural.json")  # no annotator, but the order is known
    assert "judges" in audit(llmbar).results
    explicit = analyze_judges(hh)
    assert (explicit.metrics["first_position_share"].value is None
            and "names no annotator" in explicit.notes[0])


def test_pandalm_judges_table_matches_direct_counts(pandalm_records, sample_dir):
    table, _ = load(sample_dir / "pandalm_testset_v1.json")
    res = analyze_judges(table)
    judges = res.tables["judges"]
    for k in (1, 2, 3):
        labels = np.array([r[f"annotator{k}"] for r in pandalm_records])
        row = judges.loc[f"annotator{k}"]
        assert row["n_judgements"] == 999 and row["tie_rate"] == pytest.approx((labels == 0).mean())
        assert row["first_position_share"] == pytest.approx((labels == 1).sum() / (labels != 0).sum())
        r1 = [str(r["response1"]).lower() if isinstance(r["response1"], bool) else r["response1"]
              for r in pandalm_records]
        r2 = [str(r["response2"]).lower() if isinstance(r["response2"], bool) else r["response2"]
              for r in pandalm_records]
        longer = [(lab == 1 and len(a) > len(b)) or (lab == 2 and len(b) > len(a))
                  for lab, a, b in zip(labels, r1, r2, strict=True)]
        compared = [lab != 0 and len(a) != len(b) for lab, a, b in zip(labels, r1, r2, strict=True)]
        assert row["longer_share"] == pytest.approx(sum(longer) / sum(compared))
    # PandaLM's human annotators are close to position-neutral: no flags, no warning
    assert res.metrics["max_position_bias"].value < 0.05 and res.pair_flags.empty
    assert res.metrics["swap_consistency"].value is None
