"""Loaders on the real shared datasets (formats detected, counts as documented) and on small
synthetic files of the formats with no redistributable copy (UltraFeedback, SHP, AlpacaFarm,
MT-Bench, generic long table)."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit.loaders import FORMAT_NAMES, format_module, load
from prefaudit.loaders.io import iter_records
from prefaudit.schema import LABEL_A, LABEL_B, LABEL_TIE, first_judgements, label_matrix, to_pairs

LLMBAR = "llmbar/Dataset"
#: file below shared/data -> (format, records, records whose label is 1 / chosen is the first response)
SHARED_FILES: dict[str, tuple[str, int, int | None]] = {
    "hh-rlhf/harmless-base/test.jsonl.gz": ("hh_rlhf", 2312, None),
    "llama-factory/dpo_en_demo.json": ("llama_factory", 300, None),
    "llama-factory/dpo_zh_demo.json": ("llama_factory", 300, None),
    "pandalm/testset-v1.json": ("pandalm", 999, None),
    f"{LLMBAR}/LLMBar/Natural/dataset.json": ("llmbar", 100, 42),
    f"{LLMBAR}/LLMBar/Adversarial/GPTInst/dataset.json": ("llmbar", 92, 45),
    f"{LLMBAR}/LLMBar/Adversarial/GPTOut/dataset.json": ("llmbar", 47, 22),
    f"{LLMBAR}/LLMBar/Adversarial/Manual/dataset.json": ("llmbar", 46, 22),
    f"{LLMBAR}/LLMBar/Adversarial/Neighbor/dataset.json": ("llmbar", 134, 75),
    f"{LLMBAR}/CaseStudy/Base_9/dataset.json": ("llmbar", 54, 25),
    f"{LLMBAR}/CaseStudy/Base_10/dataset.json": ("llmbar", 54, 29),
    f"{LLMBAR}/CaseStudy/Constraint/dataset.json": ("llmbar", 89, 43),
    f"{LLMBAR}/CaseStudy/Negation/dataset.json": ("llmbar", 59, 26),
    f"{LLMBAR}/CaseStudy/Normal/dataset.json": ("llmbar", 59, 33),
    f"{LLMBAR}/Processed/LLMEval^2/dataset.json": ("llmbar", 200, 92),
    f"{LLMBAR}/Processed/MT-Bench/dataset.json": ("llmbar", 200, 101),
}


def test_every_shared_file_is_covered(shared_data: Path):
    found = {str(p.relative_to(shared_data)) for p in shared_data.rglob("*")
             if p.is_file() and p.name != "README.md"}
    assert found == set(SHARED_FILES)


@pytest.mark.parametrize("rel", sorted(SHARED_FILES))
def test_shared_file_autodetected_with_documented_counts(shared_data: Path, rel: str):
    fmt, n_records, n_label1 = SHARED_FILES[rel]
    table, report = load(shared_data / rel)
    assert report.formats == [fmt]
    assert report.n_records == n_records
    assert table["pair_id"].nunique() == n_records
    if n_label1 is not None:  # LLMBar: one gold judgement per record; the split follows `label`
        raw = json.loads((shared_data / rel).read_text(encoding="utf-8"))
        first = sum(c == r["output_1"] for c, r in zip(table["chosen"], raw, strict=True))
        assert (len(table), first, len(table) - first) == (n_records, n_label1, n_records - n_label1)
        assert not table["tie"].any() and table["annotator"].isna().all()


def test_sniffing_is_unambiguous_on_every_shared_file(shared_data: Path):
    for rel, (fmt, _, _) in SHARED_FILES.items():
        _, _, first = next(iter_records(shared_data / rel))
        accepting = [n for n in FORMAT_NAMES if format_module(n).sniff(first)]
        assert accepting == [fmt], rel


def test_pandalm_counts_ties_and_true_responses(shared_data: Path):
    table, report = load(shared_data / "pandalm/testset-v1.json")
    assert len(table) == 2997 and table["pair_id"].nunique() == 999
    assert sorted(table["annotator"].unique()) == ["annotator1", "annotator2", "annotator3"]
    assert int(table["tie"].sum()) == 326
    # the six JSON `true` responses (idx 157, 158, 159, 161, 162, 164 = records idx + 1) are kept as text
    coerced = sorted(report.events["coerced_bool_response1"].first_records
                     + report.events["coerced_bool_response2"].first_records)
    assert coerced == [158, 159, 160, 162, 163, 165]
    assert report.events["coerced_bool_response1"].action == "coerced"
    for idx in (157, 158, 159, 161, 162, 164):
        rows = table[table["pair_id"] == f"pandalm/testset-v1.json:{idx}"]
        assert len(rows) == 3 and ((rows["chosen"] == "true") | (rows["rejected"] == "true")).all()
    assert report.count("empty_response1") + report.count("empty_response2") == 54
    assert report.n_dropped == 0


def test_pandalm_label_matrix_and_majority(shared_data: Path):
    table, _ = load(shared_data / "pandalm/testset-v1.json")
    mat = label_matrix(table)
    assert mat.shape == (999, 3) and not mat.isna().any().any()
    assert int((mat == LABEL_TIE).sum().sum()) == 326
    unanimous = (mat.nunique(axis=1) == 1).sum()
    assert unanimous == 879
    pairs = to_pairs(table)
    assert len(pairs) == 999 and (pairs["n_judgements"] == 3).all()
    assert int(pairs["tie"].sum()) == 105  # items whose majority is a tie


def test_pandalm_response1_preference_orients_rows(shared_data: Path):
    raw = json.loads((shared_data / "pandalm/testset-v1.json").read_text(encoding="utf-8"))
    table, _ = load(shared_data / "pandalm/testset-v1.json")
    rec = raw[0]  # idx 0: all three annotators chose response2
    rows = table[table["pair_id"] == "pandalm/testset-v1.json:0"]
    assert (rows["chosen"] == rec["response2"]).all() and (rows["rejected"] == rec["response1"]).all()
    assert rows["prompt"].iloc[0] == f"{rec['instruction']}\n\n{rec['input']}"


def test_hh_rlhf_prompts_end_at_turn_boundary(shared_data: Path):
    table, report = load(shared_data / "hh-rlhf/harmless-base/test.jsonl.gz")
    assert len(table) == 2312
    assert table["prompt"].str.endswith("\n\nAssistant:").all()
    assert report.count("prefix_mismatch") == 5
    assert (table["load_flags"] == "prefix_mismatch").sum() == 5
    assert report.events["prefix_mismatch"].action == "flagged"
    assert report.count("empty_chosen") == 4 and (table["chosen"] == "").sum() == 4
    assert report.n_dropped == 0


@pytest.mark.parametrize("name,n_system", [("dpo_en_demo.json", 80), ("dpo_zh_demo.json", 64)])
def test_llama_factory_keeps_conversations(shared_data: Path, name: str, n_system: int):
    table, report = load(shared_data / "llama-factory" / name)
    assert len(table) == 300 and not report.events
    for col in ("prompt_messages", "chosen_messages", "rejected_messages"):
        assert col in table.columns
    assert sum(m[0]["role"] == "system" for m in table["prompt_messages"]) == n_system
    roles = {m["role"] for msgs in table["prompt_messages"] for m in msgs}
    assert {"system", "user"} <= roles <= {"system", "user", "assistant"}
    assert all(m == [{"role": "assistant", "content": c}]
               for m, c in zip(table["chosen_messages"], table["chosen"], strict=True))
    raw = json.loads((shared_data / "llama-factory" / name).read_text(encoding="utf-8"))
    assert table["prompt"].iloc[0].endswith(raw[0]["conversations"][-1]["value"])
    assert table["rejected"].iloc[0] == raw[0]["rejected"]["value"]


def test_whole_shared_folder_loads_at_once(shared_data: Path):
    table, report = load(shared_data)
    assert report.n_records == sum(n for _, n, _ in SHARED_FILES.values())
    assert len(table) == report.n_rows == 2312 + 600 + 2997 + sum(
        n for f, n, _ in SHARED_FILES.values() if f == "llmbar")


# ---------------------------------------------------------------- synthetic formats


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def completion(model: str, response: str, overall, fine=None) -> dict:
    ann = {} if fine is None else {k: {"Rating": str(v), "Rationale": "."} for k, v in fine.items()}
    return {"model": model, "response": response, "overall_score": overall, "annotations": ann,
            "custom_system_prompt": "", "principle": "helpfulness", "critique": "ok"}


ULTRA = [
    {"source": "evol", "instruction": "Name a prime.", "models": ["m0", "m1", "m2", "m3"],
     "completions": [completion("m0", "4", 7.0, {"honesty": 3, "helpfulness": 2}),
                     completion("m1", "7", 9.0, {"honesty": 5, "helpfulness": 5}),
                     completion("m2", "", 3.0, {"honesty": 1, "helpfulness": 1}),
                     completion("m3", "11", 9.0, {"honesty": 5, "helpfulness": 4})]},
    {"source": "evol", "instruction": "Say hi.", "models": ["m0", "m1"],
     "completions": [completion("m0", "hi", 5, {"honesty": 4}),
                     completion("m1", "hello", "5.0", {"honesty": 4})]},
    {"source": "evol", "instruction": "Unrated.", "models": ["m0", "m1"],
     "completions": [completion("m0", "a", 6.0, {"honesty": "N/A"}), completion("m1", "b", "N/A")]},
]


def test_ultrafeedback_best_worst(tmp_path: Path):
    table, report = load(write_jsonl(tmp_path / "uf.jsonl", ULTRA), source="uf.jsonl")
    assert report.formats == ["ultrafeedback"]
    assert list(table["pair_id"]) == ["uf.jsonl:1:1-2", "uf.jsonl:2:0-1"]
    first = table.iloc[0]  # best 9.0 (first of the two 9s: "7") vs worst 3.0 (empty "")
    assert (first["prompt"], first["chosen"], first["rejected"], first["strength"], first["tie"]) == (
        "Name a prime.", "7", "", 6.0, False)
    second = table.iloc[1]  # level ratings (5 and "5.0"): a tie in completion order, strength 0
    assert ((second["chosen"], second["rejected"], second["strength"], second["tie"])
            == ("hi", "hello", 0.0, True))
    assert report.count("unrated_completion") == 1 and report.count("too_few_rated") == 1
    assert report.events["too_few_rated"].first_records == [3]
    assert report.count("empty_response") == 1


def test_ultrafeedback_all_pairs_and_fine_grained(tmp_path: Path):
    path = write_jsonl(tmp_path / "uf.jsonl", ULTRA)
    table, _ = load(path, source="uf.jsonl", pairs="all")
    rec1 = table[table["pair_id"].str.startswith("uf.jsonl:1:")]
    assert len(rec1) == 6 and len(table) == 7
    tie = rec1[rec1["pair_id"] == "uf.jsonl:1:1-3"].iloc[0]
    assert tie["tie"] and tie["strength"] == 0 and (tie["chosen"], tie["rejected"]) == ("7", "11")
    assert (rec1["strength"] >= 0).all()
    assert dict(zip(rec1["pair_id"], rec1["strength"], strict=True))["uf.jsonl:1:0-2"] == 4.0
    fine, report = load(path, rating="fine_grained")
    # fine-grained means: 2.5, 5, 1, 4.5 -> best "7" vs worst ""; record 3 keeps only one rating
    assert list(fine["strength"]) == [4.0, 0.0] and fine["chosen"].iloc[0] == "7"
    assert report.count("too_few_rated") == 1


SHP = [
    {"post_id": "p1", "domain": "askculinary_train", "upvote_ratio": 0.9,
     "history": "How long to boil an egg?",
     "c_root_id_A": "ca", "c_root_id_B": "cb", "created_at_utc_A": 1, "created_at_utc_B": 2,
     "score_A": 40, "score_B": 10, "human_ref_A": "Nine minutes.", "human_ref_B": "Forever.", "labels": 1,
     "seconds_difference": 1.0, "score_ratio": 4.0},
    {"post_id": "p1", "domain": "askculinary_train", "upvote_ratio": 0.9,
     "history": "How long to boil an egg?",
     "c_root_id_A": "cc", "c_root_id_B": "ca", "created_at_utc_A": 3, "created_at_utc_B": 1,
     "score_A": 5, "score_B": 40, "human_ref_A": "Ask your mum.", "human_ref_B": "Nine minutes.", "labels": 0,
     "seconds_difference": 2.0, "score_ratio": 8.0},
]


def test_shp_orientation_and_log_score_ratio(tmp_path: Path):
    table, report = load(write_jsonl(tmp_path / "shp.jsonl", SHP), source="shp.jsonl")
    assert report.formats == ["shp"] and not report.events
    assert list(table["pair_id"]) == ["shp.jsonl:p1:ca:cb", "shp.jsonl:p1:cc:ca"]
    assert list(table["chosen"]) == ["Nine minutes.", "Nine minutes."]
    assert list(table["rejected"]) == ["Forever.", "Ask your mum."]
    np.testing.assert_allclose(table["strength"], [math.log(4.0), math.log(8.0)])


def alpaca(instruction: str, o1: str, o2: str, pref, annotator: int, inp: str = "") -> dict:
    return {"instruction": instruction, "input": inp, "output_1": o1, "output_2": o2, "preference": pref,
            "annotator_index": annotator, "dataset": "selfinstruct", "datasplit": "eval"}


def test_alpacafarm_groups_annotators_of_the_same_comparison(tmp_path: Path):
    records = [
        alpaca("Add 2+2.", "4", "5", 1, 0),
        alpaca("Add 2+2.", "5", "4", 1, 1),        # same comparison shown the other way round
        alpaca("Add 2+2.", "4", "5", 1.5, 2),      # a draw
        alpaca("Add 2+2.", "4", "5", 2, 0),        # annotator 0 again: kept as a repeat
        alpaca("Name a colour.", "red", "blue", 0, 3, inp="Any."),  # 0 = draw in some releases
        alpaca("Name a colour.", "red", "blue", 7, 4, inp="Any."),  # unknown preference: dropped
    ]
    table, report = load(write_jsonl(tmp_path / "af.jsonl", records))
    assert report.formats == ["alpacafarm"]
    assert list(table["repeat"]) == [False, False, False, True, False]
    assert list(table["chosen_shown_first"]) == [True, True, True, False, True]
    table = first_judgements(table)
    assert len(table) == 4 and table["pair_id"].nunique() == 2
    add = table[table["prompt"] == "Add 2+2."]
    assert add["pair_id"].nunique() == 1 and list(add["annotator"]) == ["0", "1", "2"]
    assert list(add["chosen"]) == ["4", "5", "4"] and list(add["tie"]) == [False, False, True]
    colour = table[table["prompt"] == "Name a colour.\n\nAny."]
    assert len(colour) == 1 and colour["tie"].iloc[0]
    assert report.count("repeat_judgement") == 1 and report.events["repeat_judgement"].first_records == [4]
    assert report.count("unknown_preference") == 1
    mat = label_matrix(table)
    assert mat.shape == (2, 4)
    add_labels = mat.loc[add["pair_id"].iloc[0]]  # "0" and "1" chose opposite outputs, "2" a draw
    assert sorted(add_labels[["0", "1"]]) == [LABEL_A, LABEL_B] and add_labels["2"] == LABEL_TIE
    assert np.isnan(add_labels["3"])  # annotator 3 judged only the colour pair


def conversation(question: list[str], answers: list[str]) -> list[dict]:
    msgs = []
    for q, a in zip(question, answers, strict=True):
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs


def mt(qid: int, ma: str, mb: str, winner: str, judge: str, turn: int, ans: dict[str, list[str]]) -> dict:
    q = ["Write a haiku.", "Now make it rhyme."]
    return {"question_id": qid, "model_a": ma, "model_b": mb, "winner": winner, "judge": judge,
            "conversation_a": conversation(q, ans[ma]), "conversation_b": conversation(q, ans[mb]),
            "turn": turn}


def test_mt_bench_pairs_ties_and_conversations(tmp_path: Path):
    ans = {"gpt-4": ["Leaves fall.", "Leaves fall, all."], "llama-13b": ["Tree.", "Tree, free."]}
    records = [
        mt(81, "gpt-4", "llama-13b", "model_a", "expert_1", 1, ans),
        mt(81, "llama-13b", "gpt-4", "model_b", "author_2", 1, ans),   # same pair, models swapped
        mt(81, "gpt-4", "llama-13b", "tie (bothbad)", "expert_3", 1, ans),
        mt(81, "gpt-4", "llama-13b", "model_b", "expert_1", 2, ans),    # turn 2: its own pair
        mt(81, "gpt-4", "llama-13b", "model_a", "expert_1", 1, ans),    # repeat of row 1: kept, marked
    ]
    table, report = load(write_jsonl(tmp_path / "mt.jsonl", records), source="mt.jsonl")
    assert list(table["repeat"]) == [False, False, False, False, True]
    assert list(table["chosen_shown_first"]) == [True, False, True, False, True]
    assert list(table["chosen_model"]) == ["gpt-4", "gpt-4", "gpt-4", "llama-13b", "gpt-4"]
    table = first_judgements(table)
    assert report.formats == ["mt_bench"]
    t1 = table[table["pair_id"] == "mt.jsonl:81:gpt-4|llama-13b:t1"]
    assert list(t1["annotator"]) == ["expert_1", "author_2", "expert_3"]
    assert list(t1["chosen"]) == ["Leaves fall.", "Leaves fall.", "Leaves fall."]
    assert list(t1["tie"]) == [False, False, True]
    assert (t1["prompt_messages"].map(len) == 1).all() and t1["prompt"].iloc[0] == "\n\nHuman: Write a haiku."
    t2 = table[table["pair_id"] == "mt.jsonl:81:gpt-4|llama-13b:t2"].iloc[0]
    assert (t2["chosen"], t2["rejected"]) == ("Tree, free.", "Leaves fall, all.")
    assert [m["role"] for m in t2["prompt_messages"]] == ["user", "assistant", "user"]
    assert t2["load_flags"] == "prefix_mismatch" and report.count("prefix_mismatch") == 1
    assert report.count("repeat_judgement") == 1
    assert to_pairs(table).set_index("pair_id").loc["mt.jsonl:81:gpt-4|llama-13b:t1", "vote_share"] == 2 / 3


def test_generic_long_joins_responses(tmp_path: Path):
    responses = tmp_path / "responses.csv"
    with responses.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["pair_id", "prompt", "response_a", "response_b"])
        w.writerows([["q1", "Capital of France?", "Paris", "Lyon"], ["q2", "2+2?", "4", "22"],
                     ["q3", "Unlabelled", "x", "y"]])
    labels = [{"pair_id": "q1", "annotator": "ann1", "label": "A"},
              {"pair_id": "q1", "annotator": "ann2", "label": "b"},
              {"pair_id": "q1", "annotator": "ann3", "label": "tie"},
              {"pair_id": "q2", "annotator": "ann1", "label": 2},
              {"pair_id": "q2", "annotator": "ann2", "label": "0"},
              {"pair_id": "q2", "annotator": "ann3", "label": "maybe"}]
    table, report = load(write_jsonl(tmp_path / "labels.jsonl", labels), responses=str(responses))
    assert report.formats == ["generic_long"] and len(table) == 5
    assert list(table["pair_id"]) == ["q1", "q1", "q1", "q2", "q2"]
    assert list(table["chosen"]) == ["Paris", "Lyon", "Paris", "22", "4"]
    assert list(table["tie"]) == [False, False, True, False, True]
    assert report.count("unknown_label") == 1 and report.events["unknown_label"].first_records == [6]
    assert report.count("unlabelled_pair") == 1 and report.events["unlabelled_pair"].first_records == [3]
    q1 = label_matrix(table).loc["q1"]  # ann1 and ann2 chose opposite sides, ann3 a tie
    assert sorted(q1[["ann1", "ann2"]]) == [LABEL_A, LABEL_B] and q1["ann3"] == LABEL_TIE


# ---------------------------------------------------------------- readers and inputs


def _write_all_kinds(tmp_path: Path, records: list[dict], structured: tuple[str, ...]) -> list[Path]:
    """The same records as .jsonl, .json, .json.gz, .jsonl.gz, .csv (JSON cells for nested
    fields) and .parquet."""
    paths = [write_jsonl(tmp_path / "d.jsonl", records)]
    (tmp_path / "d.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    paths.append(tmp_path / "d.json")
    for name, body in (("d.json.gz", json.dumps(records)), ("d.jsonl.gz", paths[0].read_text("utf-8"))):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as fh:
            fh.write(body)
        paths.append(tmp_path / name)
    with (tmp_path / "d.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows({k: json.dumps(v) if k in structured else v for k, v in r.items()} for r in records)
    paths.append(tmp_path / "d.csv")
    pd.DataFrame(records).to_parquet(tmp_path / "d.parquet")
    paths.append(tmp_path / "d.parquet")
    return paths


@pytest.mark.parametrize("sample,structured", [
    ("llmbar_natural.json", ()),
    ("llama_factory_dpo_en_100.json", ("conversations", "chosen", "rejected")),
])
def test_file_types_give_identical_tables(tmp_path: Path, sample_dir: Path, sample: str, structured):
    records = json.loads((sample_dir / sample).read_text(encoding="utf-8"))[:40]
    tables = [load(p, source="same").table for p in _write_all_kinds(tmp_path, records, structured)]
    assert len(tables[0]) == 40
    for path_table in tables[1:]:
        pd.testing.assert_frame_equal(path_table, tables[0])


def test_csv_text_that_looks_like_json_stays_text(tmp_path: Path):
    path = tmp_path / "bar.csv"
    path.write_text('input,output_1,output_2,label\nList?,"[1, 2]","[{""a"": 1}]",2\n', encoding="utf-8")
    table, _ = load(path)
    assert (table["chosen"].iloc[0], table["rejected"].iloc[0]) == ('[{"a": 1}]', "[1, 2]")
    trl = tmp_path / "trl.csv"  # JSON answers in a structured column are still answers
    trl.write_text('prompt,chosen,rejected\nAs JSON?,"{""answer"": 4}","[{""answer"": 5}]"\n',
                   encoding="utf-8")
    table, _ = load(trl)
    assert (table["chosen"].iloc[0], table["rejected"].iloc[0]) == ('{"answer": 4}', '[{"answer": 5}]')


def test_dataframe_input(sample_dir: Path):
    path = sample_dir / "llmbar_natural.json"
    from_file, _ = load(path, source="s")
    from_frame, report = load(pd.DataFrame(json.loads(path.read_text(encoding="utf-8"))), source="s")
    assert report.formats == ["llmbar"]
    pd.testing.assert_frame_equal(from_frame, from_file)
    again, rep2 = load(from_file)  # an already canonical table passes through
    assert rep2.formats == ["canonical"]
    pd.testing.assert_frame_equal(again, from_file)


def test_same_input_same_table(sample_dir: Path):
    a, ra = load(sample_dir / "pandalm_testset_v1.json")
    b, rb = load(sample_dir / "pandalm_testset_v1.json")
    pd.testing.assert_frame_equal(a, b)
    assert ra.to_dict() == rb.to_dict()
