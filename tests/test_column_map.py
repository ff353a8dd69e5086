"""The column map: any schema onto the canonical table (``--columns`` / ``columns=``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit import load, testing
from prefaudit.errors import ConfigError, DataFormatError, UnknownFormatError
from prefaudit.loaders import column_map
from prefaudit.schema import label_matrix
from prefaudit.testing import cli_in_process as cli

REPO = Path(__file__).resolve().parent.parent
PAIRWISE_COLUMNS = "prompt=prompt,response_a=response 1,response_b=response 2,label=label"
PAIRWISE_LABELS = "0=a,1=b,2=tie"
#: PandaLM's annotator codes (0 tie, 1 response1, 2 response2) as the public pairwise set's (0 a, 1 b, 2 tie)
TO_PAIRWISE = {1: 0, 2: 1, 0: 2}


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return testing.run_cli(*args, cwd=REPO)


def pandalm_records(sample_dir: Path, n: int = 150) -> list[dict]:
    records = json.loads((sample_dir / "pandalm_testset_v1.json").read_text(encoding="utf-8"))
    return [r for r in records if isinstance(r["response1"], str) and isinstance(r["response2"], str)][:n]


@pytest.fixture
def pairwise_file(sample_dir: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A file shaped like a public pairwise test set (fields with spaces, label 0/1/2), from
    real PandaLM items and their first annotator; record 5 gets two identical responses and
    labels alternate between numbers and text."""
    records = []
    for i, r in enumerate(pandalm_records(sample_dir)):
        label = TO_PAIRWISE[r["annotator1"]]
        records.append({"prompt": r["instruction"], "response 1": r["response1"],
                        "response 2": r["response2"] if i != 4 else r["response1"],
                        "label": label if i % 2 else str(label)})
    path = tmp_path / "pairwise.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path, records


def test_pairwise_schema_maps_labels_ties_and_order(pairwise_file):
    path, records = pairwise_file
    table, report = load(path, columns=PAIRWISE_COLUMNS, label_values=PAIRWISE_LABELS)
    assert report.formats == ["column_map"] and report.n_records == len(records) == len(table)
    labels = np.array([int(r["label"]) for r in records])
    assert int(table["tie"].sum()) == int((labels == 2).sum()) > 0
    a = np.array([r["response 1"] for r in records], dtype=object)
    b = np.array([r["response 2"] for r in records], dtype=object)
    chosen = np.where(labels == 1, b, a)
    assert (table["chosen"].to_numpy() == chosen).all()
    assert (table["rejected"].to_numpy() == np.where(labels == 1, a, b)).all()
    assert (table["prompt"].to_numpy() == np.array([r["prompt"] for r in records], dtype=object)).all()


def test_pairwise_schema_audits_through_the_cli(pairwise_file, tmp_path):
    path, records = pairwise_file
    out = tmp_path / "out"
    proc = run_cli("audit", path, "--columns", PAIRWISE_COLUMNS, "--label-values", PAIRWISE_LABELS,
                   "--analyzers", "hygiene", "--no-gate", "--no-pdf", "--out", out)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "audit.json").read_text())
    n_ties = sum(int(r["label"]) == 2 for r in records)
    assert saved["summary"]["n_ties"] == n_ties
    identical = sum(r["response 1"] == r["response 2"] for r in records)
    assert identical >= 1
    assert saved["metrics"]["hygiene.identical_pair_share"] * len(records) == pytest.approx(identical)
    flags = pd.read_csv(out / "pair_flags.csv")
    assert f"{path.parent.name}/{path.name}:5" in set(flags.loc[flags["reason"] == "identical_responses",
                                                                "pair_id"])


def test_wrong_field_name_exits_2_with_one_line(pairwise_file, capsys):
    path, _ = pairwise_file
    code, _, err = cli(capsys, "inspect", path, "--columns",
                       PAIRWISE_COLUMNS.replace("response 2", "response 3"),
                       "--label-values", PAIRWISE_LABELS)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "record 1" in lines[0] and "field 'response 3'" in lines[0] and "response 2" in lines[0]


def test_unmapped_label_value_exits_2_naming_record_and_field(pairwise_file, capsys):
    path, records = pairwise_file
    code, _, err = cli(capsys, "inspect", path, "--columns", PAIRWISE_COLUMNS, "--label-values", "0=a,1=b")
    assert code == 2
    first_tie = next(i for i, r in enumerate(records, start=1) if int(r["label"]) == 2)
    line = err.strip()
    assert "\n" not in line
    assert f"record {first_tie}, field 'label'" in line and "not in --label-values" in line


def test_label_values_match_by_text():
    keys = {column_map.label_key(v) for v in (0, "0", 0.0, " 0 ", np.int64(0).item())}
    assert keys == {"0"}
    assert column_map.label_key("Tie") == column_map.label_key("tie")
    assert column_map.label_key(1.5) != column_map.label_key(1)
    assert column_map.parse_label_values({0: "A", "1": "b", 2.0: "Tie"}) == {"0": "A", "1": "B", "2": "tie"}


@pytest.mark.parametrize("columns, label_values, message", [
    ("prompt=q,chosen=good", None, "must map"),
    ("prompt=q,choosen=good,rejected=bad", None, "did you mean 'chosen'"),
    ("prompt=q,chosen=good,rejected=bad,label=l", None, "label cannot be mapped"),
    ("prompt=q,response_a=x,response_b=y,label=l", None, "give --label-values"),
    ("prompt=q,chosen=good,rejected=bad", "0=a", "needs a label field"),
    ("prompt=q,response_a=x,response_b=y,label=l", "0=first", "must be a, b or tie"),
    ("prompt q,chosen=good,rejected=bad", None, "not TARGET=FIELD"),
])
def test_bad_maps_are_config_errors(tmp_path, columns, label_values, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "x", "good": "a", "bad": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load(path, columns=columns, label_values=label_values)


def test_column_map_format_needs_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "x", "good": "a", "bad": "b"}\n', encoding="utf-8")
    with pytest.raises(UnknownFormatError, match="needs columns="):
        load(path, format="column_map")
    with pytest.raises(UnknownFormatError, match="cannot be combined"):
        load(path, format="trl_standard", columns="prompt=q,chosen=good,rejected=bad")


def test_nested_paths_and_message_lists_match_trl_conversational(tmp_path):
    """A dotted path reads a nested field; a message list on one side makes all three sides
    message lists, exactly as the TRL conversational format loads the same pairs."""
    rows = [("What is 2+2?", "4", "5"), ("Name a colour.", "Blue.", "")]
    custom = [{"meta": {"instruction": p}, "good": [{"role": "assistant", "content": c}], "bad": r,
               "score": {"good": 2, "bad": 1}} for p, c, r in rows]
    trl = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}], "score_chosen": 2, "score_rejected": 1}
           for p, c, r in rows]
    (tmp_path / "custom.jsonl").write_text("".join(json.dumps(r) + "\n" for r in custom), encoding="utf-8")
    (tmp_path / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trl), encoding="utf-8")
    mine, rep = load(tmp_path / "custom.jsonl", columns={
        "prompt": "meta.instruction", "chosen": "good", "rejected": "bad",
        "score_chosen": "score.good", "score_rejected": "score.bad"})
    ref, _ = load(tmp_path / "trl.jsonl")
    cols = ["prompt", "chosen", "rejected", "prompt_messages", "chosen_messages", "rejected_messages",
            "tie", "strength"]
    pd.testing.assert_frame_equal(mine[cols], ref[cols])
    assert rep.count("empty_rejected") == 1


def test_missing_nested_field_names_the_closest(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"meta": {"instruction": "x", "inputs": ""}, "good": "a", "bad": "b"}\n',
                    encoding="utf-8")
    with pytest.raises(DataFormatError,
                       match=r"line 1, field 'meta.instrucion'.*closest fields: instruction"):
        load(path, columns="prompt=meta.instrucion,chosen=good,rejected=bad")


def test_annotator_map_gives_the_pandalm_label_matrix(sample_dir, tmp_path):
    """One record per judgement (a long export of a labelling tool), mapped with id= and
    annotator=, gives the same label matrix as PandaLM's own loader on the same items."""
    items = pandalm_records(sample_dir, 200)
    long = [{"item": r["idx"], "q": r["instruction"], "in": r["input"], "A": r["response1"],
             "B": r["response2"], "who": ann, "verdict": r[ann]}
            for r in items for ann in ("annotator1", "annotator2", "annotator3")]
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long), encoding="utf-8")
    (tmp_path / "pandalm.json").write_text(json.dumps(items), encoding="utf-8")
    mine, _ = load(tmp_path / "long.jsonl", columns="prompt=q,response_a=A,response_b=B,label=verdict,"
                   "annotator=who,id=item", label_values="1=a,2=b,0=tie")
    ref, _ = load(tmp_path / "pandalm.json")
    m = label_matrix(mine)
    r = label_matrix(ref)
    r.index = [i.split(":")[-1] for i in r.index]
    pd.testing.assert_frame_equal(m, r, check_names=False)
    assert m.shape == (len(items), 3) and (m == 2).to_numpy().sum() > 0  # ties among the labels


def test_annotator_without_id_groups_judgements_by_content(tmp_path):
    recs = [{"p": "x", "a": "yes", "b": "no", "l": "a", "who": "ann1"},
            {"p": "x", "a": "no", "b": "yes", "l": "b", "who": "ann2"},  # same comparison shown the other way
            {"p": "x", "a": "no", "b": "yes", "l": "b", "who": "ann2"}]  # a repeat: kept, marked, counted
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    table, report = load(path, columns="prompt=p,response_a=a,response_b=b,label=l,annotator=who",
                         label_values="a=a,b=b")
    assert table["pair_id"].nunique() == 1 and len(table) == 3
    assert (table["chosen"] == "yes").all() and table["repeat"].tolist() == [False, False, True]
    assert table["chosen_shown_first"].tolist() == [True, False, False]  # response_a is shown first
    assert report.count("repeat_judgement") == 1


def test_csv_labels_are_text_and_still_match(pairwise_file, tmp_path, capsys):
    _, records = pairwise_file
    path = tmp_path / "pairwise.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    code, out, err = cli(capsys, "inspect", path, "--columns", PAIRWISE_COLUMNS, "--label-values",
                         PAIRWISE_LABELS, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["formats"] == ["column_map"]
    assert info["n_ties"] == sum(int(r["label"]) == 2 for r in records)
