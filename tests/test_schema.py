"""The canonical table: validation, label matrix, collapsing judgements into training pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prefaudit.errors import SchemaError
from prefaudit.loaders import load
from prefaudit.schema import (
    LABEL_A,
    LABEL_B,
    LABEL_TIE,
    REQUIRED_COLUMNS,
    is_multi_annotator,
    label_matrix,
    to_pairs,
    validate,
)


def judgements() -> pd.DataFrame:
    """p1: 2 x A, 1 x B; p2: A, tie, tie; p3: one judgement; p4: A and tie (non-tie votes agree)."""
    rows = [
        ("p1", "A1", "B1", "ann1", False), ("p1", "A1", "B1", "ann2", False),
        ("p1", "B1", "A1", "ann3", False),
        ("p2", "A2", "B2", "ann1", False), ("p2", "A2", "B2", "ann2", True), ("p2", "A2", "B2", "ann3", True),
        ("p3", "A3", "B3", "ann3", False),
        ("p4", "B4", "A4", "ann1", False), ("p4", "B4", "A4", "ann2", True),
    ]
    return pd.DataFrame({
        "pair_id": [r[0] for r in rows], "prompt": ["q"] * len(rows),
        "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows],
        "annotator": [r[3] for r in rows], "tie": [r[4] for r in rows],
        "strength": [np.nan] * len(rows), "source": ["test"] * len(rows),
    })


def test_validate_accepts_and_casts_canonical_table():
    table = validate(judgements())
    assert list(table.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert table["tie"].dtype == bool
    assert table["strength"].dtype == np.float64


@pytest.mark.parametrize(("column", "value", "needle"), [
    ("chosen", 3, "column 'chosen', row 2: expected text, got int"),
    ("pair_id", None, "column 'pair_id', row 2"),
    ("strength", "strong", "column 'strength'"),
])
def test_validate_names_column_and_row(column, value, needle):
    table = judgements()
    table[column] = table[column].astype(object)
    table.loc[2, column] = value
    with pytest.raises(SchemaError, match=needle):
        validate(table)


def test_validate_names_missing_columns():
    with pytest.raises(SchemaError, match=r"missing required column\(s\) \['tie'\]"):
        validate(judgements().drop(columns="tie"))


def test_label_matrix_orients_each_pair_by_its_first_row():
    mat = label_matrix(judgements())
    assert list(mat.index) == ["p1", "p2", "p3", "p4"]
    assert list(mat.columns) == ["ann1", "ann2", "ann3"]
    assert mat.loc["p1"].tolist() == [LABEL_A, LABEL_A, LABEL_B]
    assert mat.loc["p2", "ann2"] == LABEL_TIE
    assert np.isnan(mat.loc["p3", "ann1"])
    assert mat.loc["p3", "ann3"] == LABEL_A


def test_to_pairs_takes_the_majority_vote():
    pairs = to_pairs(judgements()).set_index("pair_id")
    assert pairs.loc["p1", "chosen"] == "A1" and pairs.loc["p1", "rejected"] == "B1"
    assert pairs.loc["p1", "vote_share"] == pytest.approx(2 / 3)
    assert pairs.loc["p1", "n_judgements"] == 3
    assert bool(pairs.loc["p2", "tie"]) and pairs.loc["p2", "vote_share"] == pytest.approx(2 / 3)
    assert not bool(pairs.loc["p3", "tie"])
    # one preference and one tie: the preference stands, supported by half the judgements
    assert not bool(pairs.loc["p4", "tie"]) and pairs.loc["p4", "chosen"] == "B4"
    assert pairs.loc["p4", "vote_share"] == pytest.approx(0.5)


def test_to_pairs_flips_orientation_when_b_wins():
    table = judgements()
    table.loc[1, ["chosen", "rejected"]] = ["B1", "A1"]  # now 1 x A, 2 x B
    pairs = to_pairs(table).set_index("pair_id")
    assert pairs.loc["p1", "chosen"] == "B1" and pairs.loc["p1", "rejected"] == "A1"


def test_hh_rlhf_sample_loads_single_label(sample_dir):
    table, report = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    assert report.formats == ["hh_rlhf"] and len(table) == 300
    assert not is_multi_annotator(table)
    assert table["prompt"].str.endswith("\n\nAssistant:").all()
    assert to_pairs(table)["chosen"].tolist() == table["chosen"].tolist()


def test_to_pairs_makes_a_tie_of_level_a_and_b_votes():
    table = judgements()
    table = table[table["pair_id"] != "p1"]
    extra = judgements().iloc[[0, 2]].assign(pair_id="p5")  # one A vote, one B vote
    pairs = to_pairs(pd.concat([table, extra], ignore_index=True)).set_index("pair_id")
    assert bool(pairs.loc["p5", "tie"]) and pairs.loc["p5", "n_judgements"] == 2
