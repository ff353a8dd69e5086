"""The loader's fast paths give exactly what the plain computation gives.

JSONL lines go through json's C scanner directly (:func:`prefaudit.loaders.io._parse_json_line`),
rows are moved into columns a batch at a time (:func:`prefaudit.loaders.core._collect`), and
:func:`prefaudit.audit.table_hash` writes the non-text fields a block at a time. Each is
checked here against an independent computation: ``json.loads`` line by line, the rows
built record by record, and SHA-256 of the documented byte stream.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit.errors import DataFormatError
from prefaudit.loaders import core, load
from prefaudit.loaders.io import iter_records

#: the module (``prefaudit.audit`` the attribute is the function of that name)
audit_module = importlib.import_module("prefaudit.audit")
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"

#: Valid JSONL lines whose parse has a corner: leading/trailing JSON whitespace, CRLF, escapes,
#: a lone surrogate, NaN/Infinity, an overflowing float, a big integer, a repeated key.
TRICKY_LINES = [
    '{"a": 1}\n',
    '  {"a": "leading spaces"}\n',
    '{"a": "trailing spaces and tab"} \t \n',
    '{"a": "crlf"}\r\n',
    '{"a": "caf\\u00e9 \\ud83d\\ude00 \\ud800 lone"}\n',
    '{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400, "e": 0.1}\n',
    '{"a": 123456789012345678901234567890, "b": -0, "c": 1.5e-7}\n',
    '{"a": 1, "a": 2}\n',
    '{"nested": {"x": [1, {"y": null}], "t": true, "f": false}}\n',
    '{}',
]


def test_jsonl_values_equal_json_loads(tmp_path: Path):
    path = tmp_path / "tricky.jsonl"
    path.write_bytes("".join(TRICKY_LINES).encode("utf-8", "surrogatepass"))
    got = [(line, rec) for line, _, rec in iter_records(path)]
    assert [line for line, _ in got] == list(range(1, len(TRICKY_LINES) + 1))
    # repr compares types, key order and NaN, which == would not
    assert [repr(rec) for _, rec in got] == [repr(json.loads(s)) for s in TRICKY_LINES]


@pytest.mark.parametrize("bad", [
    '{"a": 1',                # cut short
    '{"a": 1} x',             # extra data after the object
    '{"a": 1}\x0b',           # whitespace to str.isspace, not to JSON
    '{"a": 01}',              # leading zero
    '{"a": "tab\tinside"}',   # a raw control character in a string
    '\ufeff{"a": 1}',         # a byte-order mark that does not start the file
])
def test_jsonl_errors_are_those_of_json_loads(tmp_path: Path, bad: str):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 0}\n\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(bad + "\n")
    with pytest.raises(DataFormatError) as exc:
        list(iter_records(path))
    assert exc.value.line == 3
    assert exc.value.reason == f"invalid JSON ({expected.value.msg} at column {expected.value.colno})"


def test_jsonl_line_that_is_not_an_object(tmp_path: Path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 0}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected a JSON object, got list") as exc:
        list(iter_records(path))
    assert exc.value.line == 2


def _alpacafarm_records() -> list[dict]:
    """20 judgements: the generator fields start at record 8 (a column that appears after the
    first batches), record 15 repeats record 3's comparison by the same annotator (the
    ``repeat`` column appears even later), every third one prefers output_2."""
    recs = []
    for i in range(20):
        rec = {"instruction": f"Question {i}?", "output_1": f"first {i}", "output_2": f"second {i}",
               "preference": 2 if i % 3 == 0 else 1, "annotator": f"ann{i % 4}"}
        if i >= 7:
            rec.update(generator_1=f"model-a{i}", generator_2=f"model-b{i}")
        recs.append(rec)
    recs[15] = {**recs[3], "output_1": recs[3]["output_2"], "output_2": recs[3]["output_1"],
                "preference": 1}  # same comparison shown the other way round: a repeat
    return recs


@pytest.mark.parametrize("batch", [1, 3, 4096])
def test_rows_collected_in_batches_match_record_by_record(tmp_path: Path, monkeypatch, batch: int):
    recs = _alpacafarm_records()
    path = tmp_path / "af.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    monkeypatch.setattr(core, "COLLECT_BATCH", batch)
    table, report = load(path)
    assert report.n_records == report.n_rows == len(table) == 20
    second = [r["preference"] == 2 for r in recs]
    pairs = list(zip(recs, second, strict=True))
    assert table["chosen"].tolist() == [r["output_2" if b else "output_1"] for r, b in pairs]
    assert table["rejected"].tolist() == [r["output_1" if b else "output_2"] for r, b in pairs]
    assert table["prompt"].tolist() == [r["instruction"] for r in recs]
    expected_model = [None if "generator_1" not in r else r["generator_2" if b else "generator_1"]
                      for r, b in pairs]
    assert [None if pd.isna(m) else m for m in table["chosen_model"]] == expected_model
    assert np.flatnonzero(table["repeat"].to_numpy()).tolist() == [15]
    assert table["pair_id"].iloc[15] == table["pair_id"].iloc[3]
    assert table["chosen_shown_first"].tolist() == [not b for b in second]
    assert list(table.columns[:8]) == list(core.REQUIRED_COLUMNS)


@pytest.mark.parametrize("batch", [2, 4096])
def test_repeated_id_names_its_line_after_batches(tmp_path: Path, monkeypatch, batch: int):
    """The duplicate error names the repeat's line and the first occurrence's line, through
    blank lines (line != record) and batch boundaries."""
    lines = [json.dumps({"id": f"p{i}", "prompt": "Q?", "chosen": "yes", "rejected": "no"}) for i in range(9)]
    lines[7] = lines[2]
    path = tmp_path / "dup.jsonl"
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")  # record k is on line 2k - 1
    monkeypatch.setattr(core, "COLLECT_BATCH", batch)
    with pytest.raises(DataFormatError, match=r"pair_id 'p2' appears twice .*\(first at line 5\)") as exc:
        load(path)
    assert (exc.value.line, exc.value.record, exc.value.field) == (15, 8, "pair_id")


def _hash_by_definition(table: pd.DataFrame) -> str:
    """SHA-256 of each row's fields as text, joined by \\x1f, each row ended by \\x1e."""
    h = hashlib.sha256()
    for row in table[["pair_id", "prompt", "chosen", "rejected", "annotator", "tie", "strength"]].itertuples(
            index=False):
        fields = [*row[:4], "<NA>" if pd.isna(row[4]) else row[4], str(bool(row[5])),
                  "<NA>" if np.isnan(row[6]) else repr(float(row[6]))]
        h.update(("\x1f".join(fields) + "\x1e").encode("utf-8", "surrogatepass"))
    return h.hexdigest()


#: Digests main gave before the block-wise table_hash: saved audits store them, so they must not move.
PINNED = {
    "hh_rlhf_harmless_test_300.jsonl": "3f20893a6ff07c51e99089af6db39dc281864a53af2711c509220d6faf8bcb55",
    "pandalm_testset_v1.json": "a4d274fb4dda5b5d36937a42381e3534262a24bad742a960ab8a97e60317766d",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_table_hash_is_unchanged_and_blockwise(monkeypatch, name: str):
    table = load(SAMPLE / name).table
    assert audit_module.table_hash(table) == PINNED[name]
    monkeypatch.setattr(audit_module, "HASH_BLOCK", 7)  # many blocks, a ragged last one
    assert audit_module.table_hash(table) == PINNED[name] == _hash_by_definition(table)


def test_table_hash_of_every_field_kind(monkeypatch):
    """Missing annotators and strengths, ties, a lone surrogate, non-ASCII text: the block-wise
    digest is the one of the definition; changing any one field changes it."""
    table = load(SAMPLE / "pandalm_testset_v1.json").table.head(50).copy()
    table.loc[::3, "annotator"] = pd.NA
    table.loc[::4, "strength"] = np.arange(len(table.loc[::4])) * 0.37 - 2
    table.loc[5, "chosen"] = "caf\u00e9 \ud800 lone surrogate"
    monkeypatch.setattr(audit_module, "HASH_BLOCK", 8)
    digest = audit_module.table_hash(table)
    assert digest == _hash_by_definition(table)
    for col, value in (("prompt", "changed"), ("annotator", "someone"), ("tie", True), ("strength", 9.5)):
        other = table.copy()
        other.loc[1, col] = value
        assert audit_module.table_hash(other) != digest, col


def test_repeated_judgements_share_their_text_objects(monkeypatch, tmp_path):
    """A pair judged by three annotators, one JSONL record each (so each parsed into its own
    str objects), holds its id and texts once: the later rows point at the first row's objects,
    chosen and rejected matched whichever way round they were shown, and no value changes."""
    hh = load(SAMPLE / "hh_rlhf_harmless_test_300.jsonl").table.head(40)
    path = tmp_path / "three_judges.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for k, row in enumerate(hh.itertuples()):
            for j in range(3):
                swap = (k + j) % 2 == 1  # shown the other way round: the label follows
                o1, o2 = (row.rejected, row.chosen) if swap else (row.chosen, row.rejected)
                f.write(json.dumps({"instruction": row.prompt, "output_1": o1, "output_2": o2,
                                    "preference": 2 if swap else 1, "annotator": f"judge{j}"}) + "\n")
    shared = load(path).table
    monkeypatch.setattr(core, "_share_repeated_texts", lambda arrays: None)
    separate = load(path).table
    pd.testing.assert_frame_equal(shared, separate, check_exact=True)
    assert len(shared) == 120 and shared["pair_id"].nunique() == 40

    def objects(table: pd.DataFrame) -> set[int]:
        return {id(v) for c in ("pair_id", "prompt", "chosen", "rejected") for v in table[c]}

    assert len(objects(shared)) == 40 * 4  # one id, prompt, chosen, rejected per pair
    assert len(objects(separate)) == 120 * 4  # the parser's own objects, per record
