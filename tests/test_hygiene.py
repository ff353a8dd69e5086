"""Hygiene analyzer: planted defects are found with the right ids, clean pairs stay clean, and
the quirks the shared data README documents show up on the real datasets."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit.analyzers.hygiene import analyze_hygiene
from prefaudit.loaders import load
from prefaudit.results import FLAG_COLUMNS
from prefaudit.text import encoding_damage, normalize_text, truncation_sign

REPO = Path(__file__).resolve().parent.parent

#: id prefix of a planted defect -> the reason hygiene must give it.
PLANTED_REASON = {
    "planted-dup-exact-": "duplicate_pair",
    "planted-dup-norm-": "duplicate_pair",
    "planted-identical-": "identical_responses",
    "planted-contra-": "contradictory_duplicate",
    "planted-empty-": "empty_response",
    "planted-mojibake-": "encoding_damage",
    "planted-replacement-": "encoding_damage",
    "planted-control-": "encoding_damage",
    "planted-truncated-": "truncated",
    "planted-long-": "length_outlier",
}


def _flags_by_id(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for pid, reason in zip(result.pair_flags["pair_id"], result.pair_flags["reason"], strict=True):
        out.setdefault(pid, set()).add(reason)
    return out


@pytest.fixture(scope="module")
def planted(sample_dir):
    path = sample_dir / "planted_defects.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    table, _ = load(path)
    return records, analyze_hygiene(table)


def test_every_planted_defect_found_with_its_reason_and_nothing_else(planted):
    records, result = planted
    flags = _flags_by_id(result)
    planted_ids = [r["id"] for r in records if r["id"].startswith("planted-")]
    assert len(planted_ids) == 27
    for pid in planted_ids:
        want = next(reason for prefix, reason in PLANTED_REASON.items() if pid.startswith(prefix))
        assert flags.get(pid) == {want}, (pid, flags.get(pid))


def test_no_flag_on_any_clean_pair(planted):
    records, result = planted
    clean = {r["id"] for r in records if not r["id"].startswith("planted-")}
    assert len(clean) == 120
    # two real LLMBar grammar pairs are near-identical by nature (tests/test_near_identical.py)
    assert clean.isdisjoint(result.pair_flags.loc[result.pair_flags["reason"] != "near_identical", "pair_id"])


def test_duplicate_flags_name_the_original_and_exactness(planted):
    records, result = planted
    dups = result.pair_flags[result.pair_flags["reason"] == "duplicate_pair"].set_index("pair_id")
    for r in records:
        if r["id"].startswith("planted-dup-"):
            source = r["defect"].split(" of ")[1].split()[0]
            assert dups.loc[r["id"], "detail"].endswith(f"pair {source}")
            exact = r["id"].startswith("planted-dup-exact-")
            assert dups.loc[r["id"], "detail"].startswith("exact" if exact else "duplicate after")
            assert dups.loc[r["id"], "score"] == (1.0 if exact else 0.9)


def test_contradiction_flags_point_at_the_partner(planted):
    _, result = planted
    con = result.pair_flags[result.pair_flags["reason"] == "contradictory_duplicate"]
    for pid, detail in zip(con["pair_id"], con["detail"], strict=True):
        partner = pid[:-1] + ("b" if pid.endswith("a") else "a")
        assert detail.endswith(f"pair {partner}")


def test_planted_metrics_are_shares_of_pairs(planted):
    _, result = planted
    m = result.flat_metrics()
    n = 147
    assert m["hygiene.n_pairs"] == n
    assert m["hygiene.contradiction_share"] == pytest.approx(8 / n)
    assert m["hygiene.empty_response_share"] == pytest.approx(3 / n)
    assert m["hygiene.identical_pair_share"] == pytest.approx(3 / n)
    assert m["hygiene.exact_duplicate_pair_share"] == pytest.approx(3 / n)
    assert m["hygiene.duplicate_pair_share"] == pytest.approx(6 / n)
    assert m["hygiene.encoding_damage_share"] == pytest.approx(4 / n)
    assert m["hygiene.truncated_share"] == pytest.approx(2 / n)
    assert m["hygiene.length_outlier_share"] == pytest.approx(1 / n)
    assert m["hygiene.near_identical_share"] == pytest.approx(2 / n)  # two real LLMBar grammar pairs
    assert m["hygiene.flagged_share"] == pytest.approx((27 + 2) / n)
    # 4 contradiction partners and 6 duplicates repeat a prompt seen before.
    assert m["hygiene.duplicate_prompt_share"] == pytest.approx(10 / n)
    assert all(metric.meaning for metric in result.metrics.values())
    counts = result.figures["flag_counts"]
    assert counts["kind"] == "bars"
    assert dict(zip(counts["labels"], counts["values"]["pairs"], strict=True))["contradictory_duplicate"] == 8
    assert list(result.pair_flags.columns) == list(FLAG_COLUMNS)


def test_planted_file_is_reproduced_by_its_generator(sample_dir, shared_data):
    spec = importlib.util.spec_from_file_location("make_planted",
                                                  REPO / "scripts" / "make_planted_defects.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.build(shared_data, seed=0)
    lines = (sample_dir / "planted_defects.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.dumps(r, ensure_ascii=False) for r in rows] == lines


def test_deterministic(planted, sample_dir):
    _, result = planted
    table, _ = load(sample_dir / "planted_defects.jsonl")
    again = analyze_hygiene(table)
    pd.testing.assert_frame_equal(result.pair_flags, again.pair_flags)
    assert result.flat_metrics() == again.flat_metrics()


# --- multi-annotator tables -------------------------------------------------------------------

def _judgements(pid: str, prompt: str, a: str, b: str, votes: list[str]) -> list[dict]:
    rows = []
    for k, v in enumerate(votes):
        chosen, rejected = (a, b) if v in ("A", "tie") else (b, a)
        rows.append({"pair_id": pid, "prompt": prompt, "chosen": chosen, "rejected": rejected,
                     "annotator": f"ann{k}", "tie": v == "tie", "strength": np.nan, "source": "test"})
    return rows


@pytest.fixture(scope="module")
def llmbar_texts(sample_dir):
    return json.loads((sample_dir / "llmbar_natural.json").read_text(encoding="utf-8"))


def test_annotators_of_one_pair_are_not_duplicates_but_swapped_majorities_contradict(llmbar_texts):
    r0, r1, r2 = llmbar_texts[:3]
    rows = (
        _judgements("p0", r0["input"], r0["output_1"], r0["output_2"], ["A", "A", "B"])
        # same texts, responses listed the other way round, majority prefers the same response
        + _judgements("p0-swapped", r0["input"], r0["output_2"], r0["output_1"], ["B", "B", "B"])
        + _judgements("p1", r1["input"], r1["output_1"], r1["output_2"], ["A", "A", "A"])
        + _judgements("p1-flipped", r1["input"], r1["output_1"], r1["output_2"], ["B", "B", "tie"])
        + _judgements("p2", r2["input"], r2["output_1"], r2["output_2"], ["A", "B", "tie"])
    )
    result = analyze_hygiene(pd.DataFrame(rows))
    assert result.flat_metrics()["hygiene.n_pairs"] == 5
    flags = _flags_by_id(result)
    assert flags == {"p0-swapped": {"duplicate_pair"},
                     "p1": {"contradictory_duplicate"}, "p1-flipped": {"contradictory_duplicate"}}


def test_tie_and_preference_on_the_same_pair_is_a_duplicate_not_a_contradiction(llmbar_texts):
    r = llmbar_texts[5]
    rows = (_judgements("x", r["input"], r["output_1"], r["output_2"], ["A"])
            + _judgements("y", r["input"], r["output_2"], r["output_1"], ["tie"]))
    table = pd.DataFrame(rows).assign(annotator=pd.NA)
    flags = analyze_hygiene(table).pair_flags
    assert flags[["pair_id", "reason"]].values.tolist() == [["y", "duplicate_pair"]]
    assert "labelled a tie" in flags["detail"].iloc[0]


# --- real datasets ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pandalm(sample_dir):
    path = sample_dir / "pandalm_testset_v1.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    table, _ = load(path)
    return raw, table, analyze_hygiene(table)


def test_pandalm_empty_responses(pandalm):
    raw, table, result = pandalm
    ids = table.drop_duplicates("pair_id")["pair_id"].tolist()
    assert len(ids) == len(raw) == 999
    empty = {ids[i] for i, r in enumerate(raw) if r["response1"] == "" or r["response2"] == ""}
    assert sum((r["response1"] == "") + (r["response2"] == "") for r in raw) == 54  # data README
    flagged = set(result.pair_flags.loc[result.pair_flags["reason"] == "empty_response", "pair_id"])
    assert flagged == empty and len(flagged) == 54


def _as_text(value: object) -> str:
    """A PandaLM response as the loader keeps it (JSON booleans become "true"/"false")."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_pandalm_duplicate_triples_are_duplicates_not_the_annotators(pandalm):
    raw, table, result = pandalm
    ids = table.drop_duplicates("pair_id")["pair_id"].tolist()
    seen_ordered: set = set()
    seen_any: set = set()
    ordered_repeats, any_repeats = set(), set()
    for i, r in enumerate(raw):
        key = (r["instruction"], r["input"], _as_text(r["response1"]), _as_text(r["response2"]))
        unordered = (key[0], key[1], frozenset(key[2:]))
        if key in seen_ordered:
            ordered_repeats.add(ids[i])
        if unordered in seen_any:
            any_repeats.add(ids[i])
        seen_ordered.add(key)
        seen_any.add(unordered)
    assert len(ordered_repeats) == 99  # data README: same triple under another cmp_key
    dup = result.pair_flags[result.pair_flags["reason"] == "duplicate_pair"]
    exact = set(dup.loc[dup["detail"].str.startswith("exact"), "pair_id"])
    # Responses repeated in the other order are duplicates too.
    assert exact == any_repeats and ordered_repeats <= exact
    assert result.flat_metrics()["hygiene.exact_duplicate_pair_share"] == pytest.approx(len(exact) / 999)
    assert result.flat_metrics()["hygiene.n_unique_prompts"] == 170  # data README
    # Three annotators judging one pair never make it a duplicate of itself.
    assert not (dup["detail"].str.split("pair ").str[-1] == dup["pair_id"]).any()


def test_pandalm_has_no_contradictions_by_majority_vote(pandalm):
    raw, _, result = pandalm
    winners: dict = {}
    for r in raw:
        votes = Counter(int(r[f"annotator{k}"]) for k in (1, 2, 3))
        label, n = votes.most_common(1)[0]
        if n < 2 or label == 0:
            continue
        key = (r["instruction"], r["input"], frozenset([_as_text(r["response1"]), _as_text(r["response2"])]))
        winners.setdefault(key, set()).add(_as_text(r[f"response{label}"]))
    assert all(len(w) == 1 for w in winners.values())
    assert result.flat_metrics()["hygiene.contradiction_share"] == 0.0


def test_hh_sample_empty_chosen(sample_dir):
    path = sample_dir / "hh_rlhf_harmless_test_300.jsonl"
    table, report = load(path)
    result = analyze_hygiene(table)
    empty = result.pair_flags[result.pair_flags["reason"] == "empty_response"]
    assert report.count("empty_chosen") == 1
    assert empty["pair_id"].str.endswith(":87").tolist() == [True]
    assert empty["detail"].tolist() == ["chosen is empty"]


def test_hh_full_prefix_mismatch_and_empty_chosen(shared_data):
    path = shared_data / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        raw = [json.loads(line) for line in f]
    cut = "\n\nAssistant:"
    mismatch = {i + 1 for i, r in enumerate(raw)
                if r["chosen"][: r["chosen"].rfind(cut)] != r["rejected"][: r["rejected"].rfind(cut)]}
    empty = {i + 1 for i, r in enumerate(raw) if not r["chosen"][r["chosen"].rfind(cut) + len(cut):].strip()}
    assert (len(mismatch), len(empty)) == (5, 4)  # data README
    table, _ = load(path)
    result = analyze_hygiene(table)
    rec = result.pair_flags.assign(
        record=result.pair_flags["pair_id"].str.rsplit(":", n=1).str[-1].astype(int))
    assert set(rec.loc[rec["reason"] == "prefix_mismatch", "record"]) == mismatch
    assert set(rec.loc[rec["reason"] == "empty_response", "record"]) == empty
    assert result.flat_metrics()["hygiene.load_flagged_share"] == pytest.approx(5 / 2312)
    assert result.flat_metrics()["hygiene.n_unique_prompts"] == 2310  # data README


def test_llama_factory_zh_replacement_characters(shared_data):
    path = shared_data / "llama-factory" / "dpo_zh_demo.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    damaged = {i + 1 for i, r in enumerate(raw) if "\ufffd" in json.dumps(r, ensure_ascii=False)}
    table, _ = load(path)
    result = analyze_hygiene(table)
    enc = result.pair_flags[result.pair_flags["reason"] == "encoding_damage"]
    assert len(damaged) == 6
    assert set(enc["pair_id"].str.rsplit(":", n=1).str[-1].astype(int)) == damaged
    assert enc["detail"].str.endswith("U+FFFD replacement character").all()


def test_llmbar_mt_bench_order_swapped_duplicates(shared_data):
    path = shared_data / "llmbar" / "Dataset" / "Processed" / "MT-Bench" / "dataset.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    seen, repeats = set(), set()
    for i, r in enumerate(raw):
        key = (r["input"], frozenset([r["output_1"], r["output_2"]]))
        if key in seen:
            repeats.add(i + 1)
        seen.add(key)
    table, _ = load(path)
    result = analyze_hygiene(table)
    dup = result.pair_flags[result.pair_flags["reason"] == "duplicate_pair"]
    assert len(repeats) == 5
    assert set(dup["pair_id"].str.rsplit(":", n=1).str[-1].astype(int)) == repeats


# --- text utilities, figures, loader marks, edge cases --------------------------------------

def test_encoding_damage_flags_mojibake_of_real_text_but_not_the_text(llmbar_texts, sample_dir):
    en = json.loads((sample_dir / "llama_factory_dpo_en_100.json").read_text(encoding="utf-8"))
    real = ["Café crème, naïve façade — “quoted” ’tis 😀", "Größe über Äpfel", "日本語のテキスト。",
            *[r["output_1"] for r in llmbar_texts], *[r["chosen"]["value"] for r in en]]
    clean = encoding_damage(pd.Series(real))
    assert (clean == "").all()
    broken = pd.Series([t.encode("utf-8").decode("cp1252", errors="replace") for t in real[:3]])
    assert broken.ne(pd.Series(real[:3])).all()
    assert encoding_damage(broken).str.startswith("mojibake").all()


def test_normalize_text_equates_case_whitespace_and_compatibility_forms():
    s = pd.Series(["Hello  World\n", "hello world", "HELLO\u00a0WORLD", "\uff28ello world", "Hello, world"])
    n = normalize_text(s)
    assert n.iloc[:4].nunique() == 1
    assert n.iloc[4] != n.iloc[0]


def test_truncation_rule_is_conservative():
    prose = ("The committee reviewed the proposal in detail and decided that the budget would need "
             "to be revised before the next meeting, because several of the cost estimates were ")
    long_prose = " ".join([prose.strip() + "."] * 3)
    cases = {
        long_prose + " " + prose.strip(): "ends mid-sentence",
        long_prose + "\n```python\ndef f(x):\n    return": "unclosed code fence",
        long_prose + " " + prose.strip() + "...": "ends with an ellipsis",
        long_prose: "",
        long_prose + "\n- a list item that ends without any final punctuation at all": "",
        long_prose + "\n```python\nprint(1)\n```": "",
        "Paris": "",
        long_prose + " The answer is 42": "",
    }
    got = truncation_sign(pd.Series(list(cases)))
    assert got.tolist() == list(cases.values())


def test_loader_marks_become_flags(llmbar_texts):
    rows = [{"pair_id": f"q{i}", "prompt": r["input"], "chosen": r["output_1"], "rejected": r["output_2"],
             "annotator": None, "tie": False, "strength": np.nan, "source": "t",
             "load_flags": flags} for i, (r, flags) in enumerate(
                 zip(llmbar_texts[:3], ["", "prefix_mismatch", "prefix_mismatch;odd_thing"], strict=True))]
    result = analyze_hygiene(pd.DataFrame(rows))
    got = sorted(map(tuple, result.pair_flags[["pair_id", "reason"]].values.tolist()))
    assert got == [("q1", "prefix_mismatch"), ("q2", "odd_thing"), ("q2", "prefix_mismatch")]
    assert result.flat_metrics()["hygiene.load_flagged_share"] == pytest.approx(2 / 3)


def test_length_histogram_counts_every_response(planted):
    _, result = planted
    hist = result.figures["length_histogram"]
    assert sum(hist["counts"]["chosen"]) == sum(hist["counts"]["rejected"]) == 147
    assert len(hist["edges"]) == len(hist["counts"]["chosen"]) + 1
    bounds = result.figures["length_outlier_bounds"]["values"]
    assert bounds["min_chars"] < bounds["median_chars"] < bounds["max_chars"] < 78_238
    json.dumps(result.figures)


def test_empty_table():
    from prefaudit.schema import empty_table

    result = analyze_hygiene(empty_table())
    assert result.flat_metrics() == {"hygiene.n_pairs": 0.0}
    assert result.pair_flags.empty and result.notes
