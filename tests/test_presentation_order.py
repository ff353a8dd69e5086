"""Presentation order (``chosen_shown_first``) and generators (``chosen_model``/``rejected_model``):
every loader that knows them fills them, the rest leave NA; to_pairs and the label matrices
treat them consistently."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit import load
from prefaudit.errors import SchemaError
from prefaudit.schema import (
    first_judgements,
    has_order,
    label_matrix,
    presented_label_matrix,
    shown_first,
    to_pairs,
    validate,
)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_pandalm_response1_is_shown_first(sample_dir):
    records = json.loads((sample_dir / "pandalm_testset_v1.json").read_text(encoding="utf-8"))
    table, _ = load(sample_dir / "pandalm_testset_v1.json")
    labels = np.array([[r[f"annotator{k}"] for k in (1, 2, 3)] for r in records]).ravel()
    # rows are record-major, annotator-minor; label 2 (response2 won) is the only "shown second" win
    assert list(table["chosen_shown_first"]) == list(labels != 2)
    assert "chosen_model" not in table.columns
    presented = presented_label_matrix(table).to_numpy()
    expected = np.select([labels == 1, labels == 2, labels == 0], [0, 1, 2]).reshape(-1, 3)
    assert (presented == expected).all()


def test_llmbar_output_1_first_and_hh_rlhf_unknown(sample_dir):
    records = json.loads((sample_dir / "llmbar_natural.json").read_text(encoding="utf-8"))
    table, _ = load(sample_dir / "llmbar_natural.json")
    assert list(table["chosen_shown_first"]) == [r["label"] == 1 for r in records]
    hh, _ = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    assert not has_order(hh) and shown_first(hh).isna().all()
    trl, _ = load(pd.DataFrame({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]}), format="trl_standard")
    assert not has_order(trl)
    assert presented_label_matrix(hh).isna().all().all()


def test_alpacaeval_generators_and_order(tmp_path: Path):
    recs = [
        {"instruction": "Hi", "output_1": "x", "output_2": "y", "generator_1": "big", "generator_2": "small",
         "preference": 2, "annotator": "j"},
        {"instruction": "Hi", "output_1": "y", "output_2": "x", "generator_1": "small", "generator_2": "big",
         "preference": 1.5, "annotator": "k"},
    ]
    table, _ = load(write_jsonl(tmp_path / "ae.jsonl", recs))
    assert list(table["chosen"]) == ["y", "y"] and list(table["tie"]) == [False, True]
    assert (list(table["chosen_model"]) == ["small", "small"]
            and list(table["rejected_model"]) == ["big", "big"])
    assert list(table["chosen_shown_first"]) == [False, True]


def test_ultrafeedback_keeps_models_no_order(tmp_path: Path):
    def comp(model: str, response: str, score: float) -> dict:
        return {"model": model, "response": response, "overall_score": score, "annotations": {}}

    ultra = [{"instruction": "Name a prime.",
              "completions": [comp("m0", "4", 7), comp("m1", "7", 9), comp("m2", "", 3)]},
             {"instruction": "Say hi.", "completions": [comp("m0", "hi", 5), comp("m1", "hello", 5)]}]
    table, _ = load(write_jsonl(tmp_path / "uf.jsonl", ultra))
    assert list(table["chosen_model"]) == ["m1", "m0"] and list(table["rejected_model"]) == ["m2", "m1"]
    assert not has_order(table)


def test_shp_and_generic_long_first_response(tmp_path: Path):
    shp_records = [{"history": "How long to boil an egg?", "human_ref_A": a, "human_ref_B": b,
                    "labels": label, "score_A": 10, "score_B": 5}
                   for a, b, label in (("Nine.", "Ten.", 1), ("Two.", "Nine.", 0))]
    shp, _ = load(write_jsonl(tmp_path / "shp.jsonl", shp_records))
    assert list(shp["chosen_shown_first"]) == [True, False]  # labels 1 (A preferred), 0 (B preferred)
    responses = tmp_path / "responses.csv"
    with responses.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([["pair_id", "prompt", "response_a", "response_b"], ["q1", "Capital?", "Paris", "Lyon"]])
    labels = write_jsonl(tmp_path / "labels.jsonl", [{"pair_id": "q1", "annotator": "a", "label": "B"},
                                                      {"pair_id": "q1", "annotator": "b", "label": "tie"}])
    table, _ = load(labels, responses=responses)
    assert list(table["chosen_shown_first"]) == [False, True]


def judgements() -> pd.DataFrame:
    """One comparison, three judges: two pick "y" (one saw it first, one second), one picks "x";
    judge j1 also judged it again in the other order (a repeat)."""
    return validate(pd.DataFrame({
        "pair_id": ["p"] * 4, "prompt": ["q"] * 4,
        "chosen": ["y", "y", "x", "x"], "rejected": ["x", "x", "y", "y"],
        "annotator": ["j1", "j2", "j3", "j1"], "tie": [False] * 4, "strength": [np.nan] * 4,
        "source": ["t"] * 4,
        "chosen_shown_first": [True, False, True, True],
        "chosen_model": ["m_y", "m_y", "m_x", "m_x"], "rejected_model": ["m_x", "m_x", "m_y", "m_y"],
        "repeat": [False, False, False, True],
    }))


def test_repeats_are_left_out_of_label_matrix_and_pairs():
    table = judgements()
    assert len(first_judgements(table)) == 3
    mat = label_matrix(table)
    assert mat.shape == (1, 3) and list(mat.iloc[0]) == [1.0, 1.0, 0.0]  # "x" sorts first = A
    presented = presented_label_matrix(table)
    assert list(presented.iloc[0]) == [0.0, 1.0, 0.0]  # j1 and j3 chose the first shown, j2 the second
    pair = to_pairs(table).iloc[0]
    assert pair["chosen"] == "y" and pair["n_judgements"] == 3 and pair["vote_share"] == pytest.approx(2 / 3)
    assert (pair["chosen_model"], pair["rejected_model"], pair["chosen_shown_first"]) == ("m_y", "m_x", True)


def test_to_pairs_turning_a_row_round_swaps_models_and_negates_order():
    table = judgements()
    table.loc[0, ["chosen", "rejected", "chosen_model", "rejected_model"]] = ["x", "y", "m_x", "m_y"]
    table.loc[0, "chosen_shown_first"] = False  # j1 saw "y" first and chose "x"
    pair = to_pairs(table).iloc[0]  # majority of the first judgements: "x" (j1, j3) over "y" (j2)
    assert (pair["chosen"], pair["chosen_model"], pair["chosen_shown_first"]) == ("x", "m_x", False)
    table.loc[1:2, ["chosen", "rejected"]] = [["y", "x"], ["y", "x"]]
    table.loc[1:2, ["chosen_model", "rejected_model"]] = [["m_y", "m_x"], ["m_y", "m_x"]]
    pair = to_pairs(table).iloc[0]  # now "y" wins 2-1; the first row (chose "x", saw "y" first) turns round
    assert (pair["chosen"], pair["rejected"], pair["chosen_model"]) == ("y", "x", "m_y")
    assert pair["chosen_shown_first"]  # "y" was shown first to j1


@pytest.mark.parametrize(("column", "value"), [("chosen_shown_first", "yes"), ("chosen_model", 3),
                                                ("repeat", "no")])
def test_validate_rejects_bad_provenance_values(column, value):
    table = judgements().astype({column: object})
    table.loc[2, column] = value
    with pytest.raises(SchemaError, match=f"column '{column}', row 2"):
        validate(table)
