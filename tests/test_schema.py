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
    label_triples,
    presented_label_matrix,
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


@pytest.mark.parametrize(("column", "dtype", "value", "needle"), [
    ("prompt", "str", None, "column 'prompt', row 2: expected text, got float"),  # NA in a str column
    ("chosen_shown_first", object, "yes", "column 'chosen_shown_first', row 2: expected True, False or"),
    ("chosen_model", object, 7, "column 'chosen_model', row 2: expected text or missing"),
])
def test_validate_checks_typed_and_object_columns_alike(column, dtype, value, needle):
    table = judgements()
    if column not in table:
        table[column] = True if column == "chosen_shown_first" else "model"
    table[column] = table[column].astype(dtype)
    table.loc[2, column] = value
    with pytest.raises(SchemaError, match=needle):
        validate(table)
    table.loc[2, column] = table.loc[1, column]
    assert len(validate(table)) == len(table)


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


def messy_pandalm(sample_dir) -> pd.DataFrame:
    """The real PandaLM judgements plus planted mess: an annotator judging a pair a second time
    (not marked as a repeat, tie this time, order unknown), an unknown order, missing annotators,
    and a repeat row."""
    table, _ = load(sample_dir / "pandalm_testset_v1.json")
    again = table.iloc[[0, 5, 7]].assign(tie=[True, False, False])
    table = pd.concat([table, again], ignore_index=True)
    table["chosen_shown_first"] = table["chosen_shown_first"].astype("boolean")
    table.loc[[3, len(table) - 1], "chosen_shown_first"] = pd.NA
    table["annotator"] = table["annotator"].astype("string")
    table.loc[table.index[10:40:3], "annotator"] = pd.NA
    table["repeat"] = False
    repeat = table.iloc[[1, 2]].assign(repeat=True, tie=True)
    return pd.concat([table, repeat], ignore_index=True)


def pivot_reference(table: pd.DataFrame, presented: bool) -> pd.DataFrame:
    """The label matrix by pandas' pivot_table over per-row labels computed row by row."""
    table = table[~table["repeat"]]
    first = table.groupby("pair_id", sort=False).head(1).set_index("pair_id")
    text_a = {pid: min(row["chosen"], row["rejected"]) for pid, row in first.iterrows()}
    labels = []
    for row in table.itertuples():
        if presented:
            if pd.isna(row.chosen_shown_first):
                label = np.nan
            else:
                label = LABEL_TIE if row.tie else LABEL_A if row.chosen_shown_first else LABEL_B
        else:
            label = LABEL_TIE if row.tie else LABEL_A if row.chosen == text_a[row.pair_id] else LABEL_B
        labels.append(label)
    frame = pd.DataFrame({"pair_id": table["pair_id"].to_numpy(), "label": labels,
                          "annotator": table["annotator"].fillna("_single").astype(object).to_numpy()})
    mat = frame.pivot_table(index="pair_id", columns="annotator", values="label", aggfunc="last",
                            dropna=False)
    return mat.reindex(index=pd.unique(frame["pair_id"])).astype("float64").sort_index(axis=1)


@pytest.mark.parametrize("presented", [False, True])
def test_label_matrices_equal_a_pivot_of_the_judgements(sample_dir, presented):
    table = messy_pandalm(sample_dir)
    got = (presented_label_matrix if presented else label_matrix)(table)
    want = pivot_reference(table, presented)
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert got.index.name == "pair_id" and got.columns.name == "annotator"
    # an annotator's second judgement of a pair (a tie) replaces the first (not a tie)
    assert not table["tie"].iloc[0]
    assert got.loc[table["pair_id"].iloc[0], table["annotator"].iloc[0]] == LABEL_TIE


def test_label_triples_are_the_label_matrix_without_empty_cells_and_carry_the_to_pairs_label(sample_dir):
    table = messy_pandalm(sample_dir)
    triples = label_triples(table)
    matrix = label_matrix(table)
    assert len(triples.pair) == int(matrix.notna().to_numpy().sum())
    np.testing.assert_array_equal(triples.dense(), matrix.to_numpy())
    assert list(triples.pair_ids) == list(matrix.index) and triples.annotators == list(matrix.columns)
    pairs = to_pairs(table).set_index("pair_id").loc[list(triples.pair_ids)]
    first = table[~table["repeat"]].groupby("pair_id", sort=False).head(1).set_index("pair_id")
    text_a = [min(first.loc[pid, "chosen"], first.loc[pid, "rejected"]) for pid in matrix.index]
    want = np.where(pairs["tie"], LABEL_TIE, np.where(pairs["chosen"].to_numpy() == np.asarray(text_a),
                                                       LABEL_A, LABEL_B))
    np.testing.assert_array_equal(triples.final, want)


def test_to_pairs_counts_every_judgement_once_per_row(sample_dir):
    """Majority, vote share and orientation against a row-by-row count (duplicates count twice)."""
    table = messy_pandalm(sample_dir)
    kept = table[~table["repeat"]]
    pairs = to_pairs(table).set_index("pair_id")
    for pid, rows in list(kept.groupby("pair_id", sort=False))[:60]:
        a_text = min(rows["chosen"].iloc[0], rows["rejected"].iloc[0])
        votes = {"A": 0, "B": 0, "tie": 0}
        for row in rows.itertuples():
            votes["tie" if row.tie else "A" if row.chosen == a_text else "B"] += 1
        winner = ("A" if votes["A"] > votes["B"] and votes["A"] >= votes["tie"] else
                  "B" if votes["B"] > votes["A"] and votes["B"] >= votes["tie"] else "tie")
        row = pairs.loc[pid]
        assert row["n_judgements"] == len(rows)
        assert bool(row["tie"]) == (winner == "tie")
        assert row["vote_share"] == pytest.approx(votes[winner] / len(rows))
        if winner != "tie":
            assert (row["chosen"] == a_text) == (winner == "A")
