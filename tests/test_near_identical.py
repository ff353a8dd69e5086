"""Cheap displacement checks that need no model: near-identical pairs (hygiene) and pairs that
become identical once truncated to the training budget (length), on real data with planted cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rapidfuzz.distance import Levenshtein

from prefaudit.analyzers.hygiene import analyze_hygiene, near_identical_similarity
from prefaudit.analyzers.length import analyze_length
from prefaudit.loaders import load
from prefaudit.schema import to_pairs
from prefaudit.testing import byte_level_tokenizer
from prefaudit.text import normalize_text


def edit_distance(a: str, b: str) -> int:
    """Plain dynamic-programming Levenshtein distance (insert, delete, substitute: cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@pytest.fixture(scope="module")
def hh(sample_dir) -> pd.DataFrame:
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


def test_similarity_matches_a_plain_edit_distance():
    a = ["kitten", "", "The answer is 42.", "abc", "same text", "x" * 30]
    b = ["sitting", "", "The answer is 43.", "", "same text", "x" * 27]
    expected = [1 - edit_distance(x, y) / max(len(x), len(y), 1) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(near_identical_similarity(a, b), expected, atol=1e-12)
    cut = near_identical_similarity(a, b, cutoff=0.9)  # below the cutoff -> 0, above unchanged
    np.testing.assert_allclose(cut, [v if v >= 0.9 else 0.0 for v in expected], atol=1e-12)


def test_planted_near_identical_pairs_on_real_data(hh):
    table = hh.copy()
    pairs = to_pairs(table)
    long_enough = pairs.index[pairs["chosen"].str.len().between(80, 400)][:12]
    planted, below, same = list(long_enough[:10]), long_enough[10], long_enough[11]
    for k, i in enumerate(planted):  # k + 1 characters of the chosen answer changed: similarity >= 0.95
        c = table.at[i, "chosen"]
        table.at[i, "rejected"] = c[:20] + "#" * (k + 1) + c[21 + k:]
    c = table.at[below, "chosen"]
    table.at[below, "rejected"] = c[: int(len(c) * 0.8)]  # 20 % cut: similarity 0.8
    table.at[same, "rejected"] = table.at[same, "chosen"]  # identical: hygiene's identical_responses
    res = analyze_hygiene(table)
    flags = res.pair_flags[res.pair_flags["reason"] == "near_identical"].set_index("pair_id")

    # independent: the plain distance over every real pair (not the cut-off, pre-filtered path)
    p = to_pairs(table)
    sim = np.array([1 - Levenshtein.distance(c, r) / max(len(c), len(r), 1)
                    for c, r in zip(p["chosen"], p["rejected"], strict=True)])
    differ = (normalize_text(p["chosen"]) != normalize_text(p["rejected"])).to_numpy()
    expected = set(p["pair_id"][(sim >= 0.9) & differ])
    assert set(flags.index) == expected
    assert {p.at[i, "pair_id"] for i in planted} <= expected
    assert p.at[below, "pair_id"] not in expected and p.at[same, "pair_id"] not in expected
    np.testing.assert_allclose(flags.loc[sorted(expected), "score"],
                               sim[p["pair_id"].isin(expected).to_numpy()][np.argsort(
                                   p["pair_id"][p["pair_id"].isin(expected)].to_numpy())], atol=1e-12)
    assert res.metrics["near_identical_share"].value == pytest.approx(len(expected) / len(p))
    assert res.metrics["identical_pair_share"].value == pytest.approx(1 / len(p))
    # a stricter threshold keeps only the smaller edits
    strict = analyze_hygiene(table, near_identical=0.99).pair_flags
    assert (set(strict.loc[strict["reason"] == "near_identical", "pair_id"])
            == set(p["pair_id"][(sim >= 0.99) & differ]))


def test_real_pandalm_near_identical_share_is_independent(sample_dir):
    table = load(sample_dir / "pandalm_testset_v1.json").table
    p = to_pairs(table)
    sim = np.array([Levenshtein.normalized_similarity(c, r)
                    for c, r in zip(p["chosen"], p["rejected"], strict=True)])
    n = int(((sim >= 0.9) & (normalize_text(p["chosen"]) != normalize_text(p["rejected"])).to_numpy()).sum())
    assert n > 0  # PandaLM compares close model outputs: some real pairs differ by a few characters
    assert analyze_hygiene(table).metrics["near_identical_share"].value == pytest.approx(n / len(p))


def test_real_grammar_pairs_in_the_planted_file_are_near_identical(sample_dir):
    """LLMBar-Natural has pairs that differ by one word ("is"/"are"); hygiene finds exactly those."""
    table = load(sample_dir / "planted_defects.jsonl").table
    p = to_pairs(table)
    sim = np.array([1 - edit_distance(c, r) / max(len(c), len(r), 1)
                    if abs(len(c) - len(r)) < 0.1 * max(len(c), 1)
                    else 0.0 for c, r in zip(p["chosen"], p["rejected"], strict=True)])
    differ = (normalize_text(p["chosen"]) != normalize_text(p["rejected"])).to_numpy()
    flags = analyze_hygiene(table).pair_flags
    got = set(flags.loc[flags["reason"] == "near_identical", "pair_id"])
    assert got == set(p["pair_id"][(sim >= 0.9) & differ]) == {"llmbar-natural-024", "llmbar-natural-077"}


@pytest.fixture(scope="module")
def tok(hh):
    return byte_level_tokenizer(hh["prompt"].tolist()[:100] + hh["chosen"].tolist()[:100], vocab_size=400)


def test_identical_after_truncation_planted_on_real_pairs(hh, tok):
    table = to_pairs(hh).head(60).copy()
    budget = 96
    tail = " and that is all I can say about it."
    for i in range(5):  # same long start, different endings past the budget
        start = table.at[i, "chosen"] + " " + table.at[i + 10, "chosen"] + " " + table.at[i + 20, "chosen"]
        table.at[i, "prompt"] = table.at[i, "prompt"][-120:]  # the end of the real transcript
        table.at[i, "chosen"] = start * 3 + tail
        table.at[i, "rejected"] = start * 3 + " no."
    res = analyze_length(table, tokenizer=tok, max_length=budget)

    # independent: each sequence tokenized one at a time by the tokenizer's own truncation
    eos = tok.eos_token

    def cut(text: str) -> list[int]:
        return tok(text, truncation=True, max_length=budget)["input_ids"]

    expected = []
    for p, c, r in zip(table["prompt"], table["chosen"], table["rejected"], strict=True):
        full_c = tok(p + c + eos)["input_ids"]
        full_r = tok(p + r + eos)["input_ids"]
        expected.append(c != r and len(tok(p)["input_ids"]) < budget
                        and min(len(full_c), len(full_r)) >= budget
                        and cut(p + c + eos) == cut(p + r + eos))
    expected = np.array(expected)
    assert expected[:5].all()
    got = res.pair_data["identical_after_truncation"].to_numpy()
    np.testing.assert_array_equal(got, expected)
    assert res.metrics["share_identical_after_truncation"].value == pytest.approx(expected.mean())
    flagged = set(res.pair_flags.loc[res.pair_flags["reason"] == "identical_after_truncation", "pair_id"])
    assert flagged == set(table["pair_id"][expected])
    # with room for the endings the planted pairs differ again
    longest = max(len(tok(p + c + eos)["input_ids"])
                  for p, c in zip(table["prompt"], table["chosen"], strict=True))
    roomy = analyze_length(table, tokenizer=tok, max_length=longest + 1)
    assert roomy.metrics["share_identical_after_truncation"].value == 0.0


def test_identical_after_truncation_edge_cases(tok):
    long = "word " * 200
    table = pd.DataFrame({"pair_id": ["cut", "short", "prompt_fills", "same"],
                          "prompt": ["Q: ", "Q: ", long, "Q"], "chosen": [long + "yes", "yes", "a", long],
                          "rejected": [long + "no", "no", "b", long], "annotator": pd.NA, "tie": False,
                          "strength": np.nan, "source": "edge"})
    d = analyze_length(table, tokenizer=tok, max_length=32).pair_data
    # short responses differ; a prompt filling the budget is dropped by TRL; identical: hygiene's business
    assert d["identical_after_truncation"].tolist() == [True, False, False, False]
