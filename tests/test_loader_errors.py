"""Bad input: every format's loader names the file, the line (or record) and the field, and
the CLI turns it into a one-line message with exit code 2 (no traceback)."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prefaudit.errors import ConfigError, DataFormatError, UnknownFormatError
from prefaudit.loaders import FORMAT_NAMES, format_module, load

HH = "\n\nHuman: Where is Paris?\n\nAssistant:"
UF_COMPLETIONS = [{"model": "m0", "response": "Paris.", "overall_score": 8.0},
                  {"model": "m1", "response": "Rome.", "overall_score": 2.0}]
CONV = [{"role": "user", "content": "Where is Paris?"}, {"role": "assistant", "content": "France."}]

#: format -> (a valid record, a required field to delete, (field, value) putting a number where
#: text belongs, the field the type error must name)
CASES: dict[str, tuple[dict, str, tuple[str, object], str]] = {
    "trl_standard": ({"prompt": "Where is Paris?", "chosen": "France.", "rejected": "Spain."},
                     "chosen", ("rejected", 42), "rejected"),
    "hh_rlhf": ({"chosen": HH + " France.", "rejected": HH + " Spain."},
                "rejected", ("chosen", 42), "chosen"),
    "llama_factory": ({"conversations": [{"from": "human", "value": "Where is Paris?"}],
                       "chosen": {"from": "gpt", "value": "France."},
                       "rejected": {"from": "gpt", "value": "Spain."}},
                      "chosen", ("conversations", [{"from": "human", "value": 42}]), "conversations"),
    "ultrafeedback": ({"instruction": "Where is Paris?", "completions": UF_COMPLETIONS},
                      "instruction", ("completions", [{"response": 42, "overall_score": 1}, *UF_COMPLETIONS]),
                      "completions[0].response"),
    "shp": ({"post_id": "p", "history": "Where is Paris?", "human_ref_A": "France.", "human_ref_B": "Spain.",
             "labels": 1, "score_A": 10, "score_B": 2, "c_root_id_A": "a", "c_root_id_B": "b"},
            "human_ref_B", ("history", 42), "history"),
    "pandalm": ({"idx": 0, "instruction": "Where is Paris?", "input": "", "response1": "France.",
                 "response2": "Spain.", "annotator1": 1, "annotator2": 1, "annotator3": 0},
                "response2", ("instruction", 42), "instruction"),
    "alpacafarm": ({"instruction": "Where is Paris?", "input": "", "output_1": "France.",
                    "output_2": "Spain.", "preference": 1, "annotator_index": 3},
                   "preference", ("output_1", 42), "output_1"),
    "mt_bench": ({"question_id": 81, "model_a": "m0", "model_b": "m1", "winner": "model_a",
                  "judge": "expert_0", "turn": 1, "conversation_a": CONV, "conversation_b": CONV},
                 "conversation_b", ("model_a", 42), "model_a"),
    "llmbar": ({"input": "Where is Paris?", "output_1": "France.", "output_2": "Spain.", "label": 1},
               "label", ("output_2", 42), "output_2"),
    "generic_long": ({"pair_id": "q1", "annotator": "ann", "label": "A"},
                     "label", ("pair_id", 42), "pair_id"),
}
N_GOOD = 6  # more than the records format detection looks at
BAD_LINE = N_GOOD + 2  # records sit on lines 1, 3, 4, ...: line 2 is blank


def test_every_format_has_a_case():
    assert set(CASES) == set(FORMAT_NAMES)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_each_format_sniffs_only_its_own_records(fmt: str):
    record = CASES[fmt][0]
    assert [n for n in FORMAT_NAMES if format_module(n).sniff(record)] == [fmt]


def write_lines(path: Path, good: dict, bad: str, n_good: int = N_GOOD) -> Path:
    lines = [json.dumps(_vary(good, i)) for i in range(n_good)]
    lines.insert(1, "")
    lines.append(bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _vary(record: dict, i: int) -> dict:
    """A copy with distinct ids, so records do not collide as duplicate judgements."""
    out = copy.deepcopy(record)
    for key in ("idx", "pair_id", "post_id", "question_id"):
        if key in out:
            out[key] = f"{out[key]}{i}" if isinstance(out[key], str) else out[key] + i
    if "annotator_index" in out:
        out["annotator_index"] = i
    return out


def responses_table(tmp_path: Path, bad_response: bool = False) -> Path:
    path = tmp_path / "responses.jsonl"
    recs = [{"pair_id": f"q{k}", "prompt": "Where is Paris?", "response_a": "France.", "response_b": "Spain."}
            for k in ("2", *(f"1{i}" for i in range(N_GOOD)))]  # "q1" varied by _vary: q10, q11, ...
    if bad_response:
        recs[2]["response_a"] = 7
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def options(fmt: str, tmp_path: Path) -> dict:
    return {"responses": str(responses_table(tmp_path))} if fmt == "generic_long" else {}


def check(exc: DataFormatError, path: Path, field: str | None, line: int | None = BAD_LINE) -> None:
    msg = str(exc)
    assert str(path) in msg
    if line is not None:
        assert exc.line == line and f"line {line}" in msg
    if field is not None:
        assert exc.field == field and f"field '{field}'" in msg


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_bad_json_line(tmp_path: Path, fmt: str):
    good = CASES[fmt][0]
    path = write_lines(tmp_path / "bad.jsonl", good, json.dumps(good)[:-7])
    with pytest.raises(DataFormatError, match="invalid JSON") as exc:
        load(path, **options(fmt, tmp_path))
    check(exc.value, path, None)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_missing_required_field(tmp_path: Path, fmt: str):
    good, missing, _, _ = CASES[fmt]
    bad = {k: v for k, v in _vary(good, 0).items() if k != missing}
    path = write_lines(tmp_path / "bad.jsonl", good, json.dumps(bad))
    with pytest.raises(DataFormatError, match="missing required field") as exc:
        load(path, **options(fmt, tmp_path))
    check(exc.value, path, missing)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_number_where_text_belongs(tmp_path: Path, fmt: str):
    good, _, (key, value), field = CASES[fmt]
    bad = {**_vary(good, 0), key: value}
    path = write_lines(tmp_path / "bad.jsonl", good, json.dumps(bad))
    if fmt == "generic_long":  # the label table holds no text: a number pair_id names no known pair
        with pytest.raises(DataFormatError, match="not in the responses table") as exc:
            load(path, **options(fmt, tmp_path))
        check(exc.value, path, "pair_id")
        return
    with pytest.raises(DataFormatError, match="expected") as exc:
        load(path, format=fmt)
    check(exc.value, path, field)


def test_generic_long_number_in_responses_table(tmp_path: Path):
    labels = write_lines(tmp_path / "labels.jsonl", CASES["generic_long"][0],
                         json.dumps({"pair_id": "q2", "label": 1}))
    responses = responses_table(tmp_path, bad_response=True)
    with pytest.raises(DataFormatError, match="expected text, got int") as exc:
        load(labels, responses=str(responses))
    check(exc.value, responses, "response_a", line=3)


def test_generic_long_needs_responses_option(tmp_path: Path):
    labels = write_lines(tmp_path / "labels.jsonl", CASES["generic_long"][0], "{}")
    with pytest.raises(ConfigError, match="responses=PATH"):
        load(labels)
    with pytest.raises(DataFormatError, match="responses table not found"):
        load(labels, responses=str(tmp_path / "nope.csv"))


def test_json_list_file_names_record(tmp_path: Path):
    good = CASES["llmbar"][0]
    path = tmp_path / "bar.json"
    path.write_text(json.dumps([good] * 6 + [{**good, "output_1": 3.5}]), encoding="utf-8")
    with pytest.raises(DataFormatError) as exc:
        load(path)
    assert exc.value.record == 7 and "record 7, field 'output_1'" in str(exc.value)
    path.write_text("[\n" + json.dumps(good) + ",\n{oops}\n]", encoding="utf-8")
    with pytest.raises(DataFormatError, match="invalid JSON") as exc:
        load(path)
    check(exc.value, path, None, line=3)


def test_reader_level_damage(tmp_path: Path):
    csv_path = tmp_path / "bar.csv"
    csv_path.write_text("input,output_1,output_2,label\nq,a,b,1\nq,a,b,2,extra\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="row has 5 fields, header has 4") as exc:
        load(csv_path)
    check(exc.value, csv_path, None, line=3)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(CASES["llmbar"][0]).encode() + b'\n{"input": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match="not valid UTF-8"):
        load(latin)
    gz = tmp_path / "cut.jsonl.gz"
    body = "".join(json.dumps({**CASES["llmbar"][0], "input": f"question {i}"}) + "\n" for i in range(2000))
    packed = gzip.compress(body.encode())
    gz.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(DataFormatError, match="cannot read file"):
        load(gz)
    pq = tmp_path / "broken.parquet"
    pq.write_bytes(b"PAR1 not really")
    with pytest.raises(DataFormatError, match="not a readable parquet file"):
        load(pq)
    not_obj = write_lines(tmp_path / "list.jsonl", CASES["llmbar"][0], "[1, 2]")
    with pytest.raises(DataFormatError, match="expected a JSON object") as exc:
        load(not_obj)
    check(exc.value, not_obj, None)


def test_unknown_format_and_option(tmp_path: Path):
    path = write_lines(tmp_path / "x.jsonl", {"question": "q", "answer": "a"}, "{}")
    with pytest.raises(UnknownFormatError, match="cannot detect the format.*question"):
        load(path)
    with pytest.raises(UnknownFormatError, match="unknown format 'nope'"):
        load(path, format="nope")
    uf = write_lines(tmp_path / "uf.jsonl", CASES["ultrafeedback"][0], json.dumps(CASES["ultrafeedback"][0]))
    with pytest.raises(ConfigError, match="pairs='some'"):
        load(uf, pairs="some")
    txt = tmp_path / "t.txt"
    txt.write_text("Where is Paris?\n", encoding="utf-8")
    with pytest.raises(UnknownFormatError, match="cannot tell the file type"):
        load(txt)


def test_mt_bench_turn_beyond_conversation(tmp_path: Path):
    good = CASES["mt_bench"][0]
    path = write_lines(tmp_path / "mt.jsonl", good, json.dumps({**_vary(good, 0), "turn": 2}))
    with pytest.raises(DataFormatError, match="1 user turn") as exc:
        load(path)
    check(exc.value, path, "conversation_a")


def test_dataframe_record_error_names_record():
    frame = pd.DataFrame([CASES["llmbar"][0]] * 6 + [{**CASES["llmbar"][0], "input": 5}])
    with pytest.raises(DataFormatError) as exc:
        load(frame)
    assert str(exc.value).startswith("<DataFrame>, record 7, field 'input'")


@pytest.mark.parametrize("kind", ["bad_json", "missing_field", "wrong_type"])
def test_cli_audit_exits_2_without_traceback(tmp_path: Path, kind: str):
    good, missing, (key, value), field = CASES["trl_standard"]
    bad = {"bad_json": json.dumps(good)[:-3],
           "missing_field": json.dumps({k: v for k, v in good.items() if k != missing}),
           "wrong_type": json.dumps({**good, key: value})}[kind]
    path = write_lines(tmp_path / "bad.jsonl", good, bad)
    proc = subprocess.run([sys.executable, "-m", "prefaudit.cli", "audit", str(path), "--out",
                           str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("prefaudit: error:")
    assert str(path) in lines[0] and f"line {BAD_LINE}" in lines[0]
    if kind != "bad_json":
        assert f"field '{missing if kind == 'missing_field' else field}'" in lines[0]
    assert not (tmp_path / "out" / "audit.json").exists()


def test_repeated_pair_id_for_the_same_annotator(tmp_path: Path):
    good = {**CASES["trl_standard"][0], "id": "same"}
    path = write_lines(tmp_path / "dup.jsonl", good, json.dumps({**good, "id": "other"}), n_good=2)
    with pytest.raises(DataFormatError, match="pair_id 'same' appears twice") as exc:
        load(path)
    assert exc.value.record == 2 and exc.value.field == "pair_id"
