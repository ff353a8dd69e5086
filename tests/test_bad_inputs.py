"""The bad-input suite: every hostile or odd input is one line on stderr and exit 2 (naming the
file, the line or record, and the field), or a counted LoadReport event; never a traceback,
never a silent coercion. Every input is built here."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit.analyzers.coverage import analyze_coverage
from prefaudit.audit import audit, read_audit, save_audit
from prefaudit.cli import MAX_SEED, main
from prefaudit.errors import DataFormatError
from prefaudit.gate import apply_policy
from prefaudit.loaders import load
from prefaudit.scoring import embed as E
from prefaudit.scoring.embed_cache import EmbeddingStore, model_folder

TRL = {"prompt": "Where is Paris?", "chosen": "In France.", "rejected": "In Spain."}


def records(n: int, **extra: object) -> list[dict]:
    return [{**TRL, "prompt": f"Where is Paris? ({i})", **extra} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stderr). An uncaught exception fails the test."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


def one_line_error(rc: int, err: str, *parts: object) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])
    return lines[0]


def inspect_error(capsys: pytest.CaptureFixture[str], path: Path, *parts: object) -> str:
    rc, err = cli(capsys, "inspect", path)
    return one_line_error(rc, err, path, *parts)


# --- tracebacks and wrong exit codes ---------------------------------------------------------

def _gzip_body(n: int = 3000) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in records(n)).encode(), mtime=0)


def test_gzip_cut_short_corrupt_or_not_gzip(tmp_path, capsys):
    packed = _gzip_body()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])  # EOFError
    inspect_error(capsys, cut, "cannot read file", "damaged or truncated", "line ")
    corrupt = tmp_path / "corrupt.jsonl.gz"  # 3000 good lines, then a member of bad deflate data
    corrupt.write_bytes(packed + packed[:10] + b"\xff" * 100)
    inspect_error(capsys, corrupt, "damaged or truncated", "line 3001", "invalid block type")  # zlib.error
    crc = tmp_path / "crc.jsonl.gz"
    crc.write_bytes(packed[:-8] + b"\0" * 8)
    inspect_error(capsys, crc, "damaged or truncated", "CRC check failed")  # BadGzipFile
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(b"this is not gzip\n")  # BadGzipFile
    inspect_error(capsys, fake, "damaged or truncated", "line 1")
    whole = tmp_path / "cut.json.gz"  # a JSON list read whole
    whole.write_bytes(gzip.compress(json.dumps(records(2000)).encode())[:5000])
    inspect_error(capsys, whole, "damaged or truncated")


def test_csv_cell_over_the_csv_modules_limit_is_read_whole_and_counted(tmp_path):
    big, edge = "x" * 5_000_000, "y" * 131_072  # the csv module's default limit: still within it
    path = tmp_path / "big.csv"
    path.write_text(f"prompt,chosen,rejected\nWhere?,{big},no\nWhy?,{edge},no\n"
                    f"\"{edge}z\",yes,no\nHow?,a,b\n", encoding="utf-8")
    table, report = load(path)
    assert table["chosen"].tolist() == [big, edge, "yes", "a"] and table["prompt"].iloc[2] == edge + "z"
    event = report.events["long_csv_cell"]
    assert (event.count, event.first_records, event.action) == (2, [1, 3], "kept")
    assert "131072" in event.description and list(report.events) == ["long_csv_cell"]


def test_json_nested_too_deeply(tmp_path, capsys):
    deep = '{"prompt": ' + "[" * 200_000 + "]" * 200_000 + "}"
    path = write_jsonl(tmp_path / "deep.jsonl", [TRL, deep])
    inspect_error(capsys, path, "line 2", "nested too deeply")
    listed = tmp_path / "deep.json"
    listed.write_text("[" + json.dumps(TRL) + ",\n" + deep + "]", encoding="utf-8")
    inspect_error(capsys, listed, "nested too deeply")


def test_integer_over_pythons_digit_limit(tmp_path, capsys):
    huge = "9" * 5000
    line = json.dumps(TRL)[:-1] + f', "score_chosen": {huge}, "score_rejected": 1}}'
    path = write_jsonl(tmp_path / "huge.jsonl", [TRL, line])
    inspect_error(capsys, path, "line 2", "field 'score_chosen'", "4300 digits")
    listed = tmp_path / "huge.json"
    listed.write_text(f"[{json.dumps(TRL)}, {line}]", encoding="utf-8")
    inspect_error(capsys, listed, "record 2", "field 'score_chosen'")


@pytest.mark.parametrize("seed", ["-1", str(MAX_SEED + 1), "1.5", "9" * 5000])
def test_seed_out_of_range(tmp_path, capsys, seed):
    data = write_jsonl(tmp_path / "d.jsonl", records(3))
    rc, err = cli(capsys, "audit", data, "--seed", seed, "--out", tmp_path / "out")
    one_line_error(rc, err, "--seed")
    assert not (tmp_path / "out").exists()


def test_seed_bounds_are_accepted(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", records(3))
    rc, err = cli(capsys, "audit", data, "--seed", MAX_SEED, "--analyzers", "hygiene", "--no-gate",
                  "--no-pdf", "--out", tmp_path / "out")
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["config"]["seed"] == MAX_SEED


@pytest.mark.parametrize("value", [",", " , ", "hygiene,nope"])
def test_analyzers_empty_or_unknown(tmp_path, capsys, value):
    data = write_jsonl(tmp_path / "d.jsonl", records(3))
    rc, err = cli(capsys, "audit", data, "--analyzers", value, "--out", tmp_path / "out")
    one_line_error(rc, err, "--analyzers")


def test_no_records_with_format_given(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    for command in ("inspect", "audit"):
        rc, err = cli(capsys, command, empty, "--format", "trl_standard")
        one_line_error(rc, err, empty, "no records")
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,chosen,rejected\n", encoding="utf-8")
    one_line_error(*cli(capsys, "inspect", header_only, "--format", "trl_standard"), "no records")
    # records, but every one dropped: not an audit of 0 pairs either
    unrated = write_jsonl(tmp_path / "uf.jsonl",
                          [{"instruction": "q", "completions": [{"response": "a"}]}] * 2)
    one_line_error(*cli(capsys, "inspect", unrated), "no judgements", "too_few_rated: 2")


@pytest.mark.parametrize(("doc", "field"), [
    ({"metrics": [0.1, 0.2]}, "metrics"),
    ({"metrics": "hygiene.x"}, "metrics"),
    ({"metrics": {"hygiene.contradiction_share": "low"}}, "metrics.hygiene.contradiction_share"),
    ({"metrics": {"hygiene.contradiction_share": True}}, "metrics.hygiene.contradiction_share"),
    ({"metrics": {"hygiene.contradiction_share": 1e999}}, "metrics.hygiene.contradiction_share"),
    ({"metrics": {}, "analyzers": {"hygiene": {"metrics": []}}}, "analyzers.hygiene.metrics"),
    ({"metrics": {}, "analyzers": {"hygiene": {"top_flags": 5}}}, "analyzers.hygiene.top_flags"),
    ({"metrics": {}, "analyzers": {"hygiene": {"tables": {"t": 1}}}}, "analyzers.hygiene.tables.t"),
    ({"metrics": {}, "load_report": {"events": [1]}}, "load_report.events[0]"),
    ({"metrics": {}, "summary": {"sources": 5}}, "summary.sources"),
    ({"metrics": {}, "verdict": 3}, "verdict"),
])
def test_gate_and_report_on_a_malformed_audit_json(tmp_path, capsys, doc, field):
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    one_line_error(*cli(capsys, "gate", path), path, f"field '{field}'")
    one_line_error(*cli(capsys, "report", path, "--no-pdf"), path, f"field '{field}'")
    assert not (tmp_path / "report.html").exists()


def test_randomly_damaged_saved_audits_never_crash_gate_or_report(tmp_path):
    """Any value of a real audit.json replaced by a value of another type: the gate and the
    report model either work or raise the one-line PrefauditError, never anything else."""
    from prefaudit.errors import PrefauditError
    from prefaudit.report.model import build_report_model

    save_audit(audit(_flagged_table(n_same=20), ["hygiene", "length"]), tmp_path / "good")
    base = json.loads((tmp_path / "good" / "audit.json").read_text())

    def paths(obj: object, prefix: tuple = ()) -> list[tuple]:
        items = obj.items() if isinstance(obj, dict) else enumerate(obj[:2]) if isinstance(obj, list) else []
        return [prefix] * bool(prefix) + [p for k, v in items for p in paths(v, (*prefix, k))]

    rng = np.random.default_rng(0)
    every = paths(base)
    replacements = [None, 1, "x", [], {}, True, [1], {"a": 1}, 1e308]
    path = tmp_path / "audit.json"
    for _ in range(80):
        doc = json.loads(json.dumps(base))
        where = every[rng.integers(len(every))]
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = replacements[rng.integers(len(replacements))]
        path.write_text(json.dumps(doc), encoding="utf-8")
        try:
            apply_policy(read_audit(path), None)
            build_report_model(path)
        except PrefauditError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


# --- silent coercions and losses -------------------------------------------------------------

def test_null_ids_get_generated_ids_and_are_counted(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", [*records(2, id=None), {**TRL, "id": "kept"}])
    table, report = load(path)
    assert list(table["pair_id"]) == [f"{tmp_path.name}/ids.jsonl:1", f"{tmp_path.name}/ids.jsonl:2", "kept"]
    assert report.count("null_id") == 2 and report.events["null_id"].first_records == [1, 2]


def test_parquet_float_ids(tmp_path, capsys):
    frame = pd.DataFrame(records(3))
    frame["id"] = [1.0, 2.0, np.nan]  # an integer id column that held a null
    path = tmp_path / "ids.parquet"
    frame.to_parquet(path)
    table, report = load(path)
    assert list(table["pair_id"]) == ["1", "2", f"{tmp_path.name}/ids.parquet:3"]
    assert report.count("float_id") == 2 and report.count("null_id") == 1
    frame["id"] = [1.0, 1.5, 3.0]
    frame.to_parquet(path)
    inspect_error(capsys, path, "record 2", "field 'id'", "1.5")


@pytest.mark.parametrize(("chosen", "rejected", "events", "strength"), [
    ("NaN", 1, {"non_finite_score": 1, "one_score_missing": 1}, None),
    (float("nan"), 1, {"non_finite_score": 1, "one_score_missing": 1}, None),
    (1, "1e400", {"non_finite_score": 1, "one_score_missing": 1}, None),
    (float("inf"), float("inf"), {"non_finite_score": 2}, None),
    (7, None, {"one_score_missing": 1}, None),
    (1e308, -1e308, {"non_finite_score": 1}, None),  # the difference overflows
    ("8.5", 6, {}, 2.5),
])
def test_scores_that_are_not_finite_or_alone_are_counted(tmp_path, chosen, rejected, events, strength):
    rec = {**TRL, "score_chosen": chosen, "score_rejected": rejected}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec).replace('"1e400"', "1e400") + "\n", encoding="utf-8")
    table, report = load(path)
    assert {e.reason: e.count for e in report.events.values()} == events
    got = table["strength"].iloc[0]
    assert (math.isnan(got) if strength is None else got == strength) and not table["tie"].iloc[0]


def test_boolean_or_text_scores_are_errors(tmp_path, capsys):
    for i, (value, shown) in enumerate(((True, "bool"), ("high", "'high'"))):
        bad = {**TRL, "score_chosen": value, "score_rejected": 1}
        path = write_jsonl(tmp_path / f"b{i}.jsonl", [TRL, bad])
        inspect_error(capsys, path, "line 2", "field 'score_chosen'", shown)


def test_csv_empty_score_cells_are_no_scores(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("prompt,chosen,rejected,score_chosen,score_rejected\nq,a,b,,\nq2,a,b,3,1\n",
                    encoding="utf-8")
    table, report = load(path)
    assert math.isnan(table["strength"].iloc[0]) and table["strength"].iloc[1] == 2.0 and not report.events


@pytest.mark.parametrize("role", ["robot", 7])
def test_unknown_message_role_in_trl_conversational_data(tmp_path, capsys, role):
    good = {"prompt": [{"role": "user", "content": "Hi"}],
            "chosen": [{"role": "assistant", "content": "Hello"}],
            "rejected": [{"role": "assistant", "content": "Go away"}]}
    bad = {**good, "prompt": [{"role": role, "content": "Hi"}]}
    path = write_jsonl(tmp_path / "conv.jsonl", [good, bad])
    inspect_error(capsys, path, "line 2", "field 'prompt'", f"unknown role {role!r}")


def test_csv_with_a_duplicated_header_column(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("prompt,chosen,rejected,chosen\nq,a,b,c\n", encoding="utf-8")
    inspect_error(capsys, path, "line 1", "field 'chosen'", "appears twice")


def _folder_with_bad_entries(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "data"
    (root / "locked").mkdir(parents=True)
    write_jsonl(root / "a.jsonl", records(2))
    write_jsonl(root / "locked" / "b.jsonl", records(2))
    os.symlink(root, root / "loop")
    os.symlink(root / "gone.jsonl", root / "dangling.jsonl")
    (tmp_path / "elsewhere").mkdir()
    write_jsonl(tmp_path / "elsewhere" / "c.jsonl", records(2))
    os.symlink(tmp_path / "elsewhere", root / "linked")
    os.symlink(tmp_path / "elsewhere" / "c.jsonl", root / "file_link.jsonl")  # a link to a file is read
    return root, {"unreadable_folder": root / "locked", "symlink_loop": root / "loop",
                  "dangling_link": root / "dangling.jsonl", "linked_folder": root / "linked"}


def _deny(monkeypatch: pytest.MonkeyPatch, *denied: Path) -> None:
    """Permission errors for ``denied`` folders (the tests may run as root, which reads anything)."""
    scandir = os.scandir

    def fake(path: object = ".") -> object:
        if Path(path) in denied:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", fake)


def test_folder_skips_are_counted_and_named(tmp_path, monkeypatch):
    root, bad = _folder_with_bad_entries(tmp_path)
    _deny(monkeypatch, bad["unreadable_folder"])
    table, report = load(root)
    assert len(table) == 4  # a.jsonl and file_link.jsonl
    for reason, path in bad.items():
        event = report.events[reason]
        assert event.first_records == [str(path)] and event.action == "dropped"


def test_inspect_names_skipped_folder_entries(tmp_path, monkeypatch, capsys):
    root, bad = _folder_with_bad_entries(tmp_path)
    _deny(monkeypatch, bad["unreadable_folder"])
    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    for reason, path in bad.items():
        assert reason in out and str(path) in out


def test_permission_denied_folder_is_not_an_empty_folder(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    (root / "inner").mkdir(parents=True)
    write_jsonl(root / "inner" / "a.jsonl", records(2))
    _deny(monkeypatch, root)
    line = inspect_error(capsys, root, "cannot read folder", "Permission denied")
    assert "holds no data files" not in line
    monkeypatch.undo()
    _deny(monkeypatch, root / "inner")
    inspect_error(capsys, root, "holds no .jsonl", "unreadable_folder", root / "inner")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder; the monkeypatched tests above cover it")
def test_a_real_unreadable_folder(tmp_path):
    root = tmp_path / "data"
    (root / "locked").mkdir(parents=True)
    write_jsonl(root / "a.jsonl", records(2))
    write_jsonl(root / "locked" / "b.jsonl", records(2))
    (root / "locked").chmod(0)
    try:
        table, report = load(root)
    finally:
        (root / "locked").chmod(0o755)
    assert len(table) == 2 and report.events["unreadable_folder"].first_records == [str(root / "locked")]


def test_duplicate_id_named_by_its_record_in_its_own_file(tmp_path, capsys):
    first = write_jsonl(tmp_path / "a.jsonl", [{**TRL, "id": f"a{i}"} for i in range(5)])
    second = write_jsonl(tmp_path / "b.jsonl", [{**TRL, "id": "x"}, {**TRL, "id": "y"}, {**TRL, "id": "x"}])
    rc, err = cli(capsys, "inspect", first, second)
    one_line_error(rc, err, second, "line 3", "field 'pair_id'", "'x' appears twice", "first at line 1")
    with pytest.raises(DataFormatError) as exc:
        load([first, second])
    assert exc.value.record == 3 and exc.value.line == 3  # not row 8 of the combined table
    again = write_jsonl(tmp_path / "c.jsonl", [{**TRL, "id": "c"}, {**TRL, "id": "a3"}])
    one_line_error(*cli(capsys, "inspect", first, again), again, f"also appears in {first}",
                   "field 'pair_id'")
    frame = pd.DataFrame([{**TRL, "id": "p"}, {**TRL, "id": "q"}, {**TRL, "id": "p"}])
    with pytest.raises(DataFormatError, match=r"<DataFrame>, record 3, field 'pair_id'.*first at record 1"):
        load(frame)


def test_invalid_utf8_reported_by_its_line(tmp_path, capsys):
    lines = [json.dumps(r).encode() for r in records(3000)]  # ~200 kB: far past the first read chunk
    lines[2499] = lines[2499].replace(b"Paris", b"Par\xe9s")
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    inspect_error(capsys, jsonl, "line 2500", "not valid UTF-8")
    listed = tmp_path / "latin.json"
    listed.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    inspect_error(capsys, listed, "line 2501", "not valid UTF-8")
    rows = [b"prompt,chosen,rejected"] + [f"q{i},a,b".encode() for i in range(3000)]
    rows[2000] = b"caf\xe9,a,b"
    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes(b"\n".join(rows) + b"\n")
    inspect_error(capsys, csv_path, "line 2001", "not valid UTF-8")


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + b"".join(json.dumps(r).encode() + b"\n" for r in records(2)))
    (tmp_path / "b.json").write_bytes(bom + json.dumps(records(2)).encode())
    (tmp_path / "c.csv").write_bytes(bom + b"prompt,chosen,rejected\nq1,a,b\nq2,a,b\n")
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(bom + json.dumps(TRL).encode() + b"\n"))
    for name in ("a.jsonl", "b.json", "c.csv", "d.jsonl.gz"):
        table, report = load(tmp_path / name)
        assert report.formats == ["trl_standard"] and not report.events
        assert table["prompt"].iloc[0] in ("q1", "Where is Paris? (0)", TRL["prompt"])


def test_old_mac_line_endings_still_read(tmp_path):
    (tmp_path / "cr.csv").write_bytes(b"prompt,chosen,rejected\rq1,a,b\rq2,\"c\r\nd\",e\r")
    (tmp_path / "cr.jsonl").write_bytes(b"\r".join(json.dumps(r).encode() for r in records(2)))
    assert list(load(tmp_path / "cr.csv").table["chosen"]) == ["a", "c\r\nd"]
    assert len(load(tmp_path / "cr.jsonl").table) == 2


def test_float_annotator_ids_from_parquet(tmp_path):
    frame = pd.DataFrame({"instruction": ["Where is Paris?"] * 3, "output_1": ["France."] * 3,
                          "output_2": ["Spain."] * 3, "preference": [1, 1, 2],
                          "annotator_index": [3.0, 4.0, np.nan]})
    frame.to_parquet(tmp_path / "af.parquet")
    table, report = load(tmp_path / "af.parquet")
    assert list(table["annotator"].fillna("<none>")) == ["3", "4", "<none>"]
    assert report.count("float_id") == 2


def test_target_prompt_list_with_a_bom_or_damaged_gzip(tmp_path):
    from prefaudit.loaders.prompts import load_prompts

    txt = tmp_path / "target.txt"
    txt.write_bytes(b"\xef\xbb\xbfFirst prompt\n\nSecond prompt\r\n")
    assert load_prompts(txt) == ["First prompt", "Second prompt"]
    cut = tmp_path / "target.txt.gz"
    packed = gzip.compress("".join(f"prompt {i}\n" for i in range(20000)).encode())
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataFormatError, match=r"target.txt.gz, line \d+: cannot read file: damaged"):
        load_prompts(cut)


def test_no_traceback_from_a_real_process(tmp_path):
    packed = _gzip_body()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    proc = subprocess.run([sys.executable, "-m", "prefaudit.cli", "audit", str(cut), "--seed", "-1"],
                          capture_output=True, text=True, timeout=120)
    one_line_error(proc.returncode, proc.stderr, "--seed")
    proc = subprocess.run([sys.executable, "-m", "prefaudit.cli", "inspect", str(cut)],
                          capture_output=True, text=True, timeout=120)
    one_line_error(proc.returncode, proc.stderr, cut, "damaged or truncated")


# --- the saved audit round-trips; hygiene always runs ----------------------------------------

def _flagged_table(n_same: int = 150, n_ok: int = 30) -> pd.DataFrame:
    """``n_same`` pairs whose two responses are identical (each a hygiene flag) and normal ones."""
    rows = [{"pair_id": f"same{i}", "prompt": f"Question {i}?", "chosen": f"Answer {i}.",
             "rejected": f"Answer {i}."} for i in range(n_same)]
    rows += [{"pair_id": f"ok{i}", "prompt": f"Other question {i}?", "chosen": f"Yes, {i}.",
              "rejected": "No."} for i in range(n_ok)]
    table = pd.DataFrame(rows)
    table["annotator"], table["tie"], table["strength"], table["source"] = pd.NA, False, np.nan, "built"
    return table


def test_saved_audit_round_trips_every_flag(tmp_path):
    table = _flagged_table()
    result = audit(table, ["hygiene", "length"])
    assert (result.pair_flags()["analyzer"] == "hygiene").sum() > 100  # more than audit.json keeps
    save_audit(result, tmp_path)
    back = read_audit(tmp_path / "audit.json")
    assert back.flags_complete
    pd.testing.assert_frame_equal(back.pair_flags(), result.pair_flags(), check_dtype=False)
    assert json.dumps(back.to_dict(), default=str) == json.dumps(result.to_dict(), default=str)
    assert set(back.pair_flags().query("reason == 'identical_responses'")["pair_id"]) == {
        f"same{i}" for i in range(150)}
    assert read_audit(tmp_path).metrics == result.metrics  # the folder works too
    from prefaudit.selection import training_pairs  # what train_dpo drops with a saved audit

    pairs, dropped = training_pairs(table, back, ("identical_responses",), False, 0)
    assert dropped["identical_responses"] == 150 and len(pairs) == 30


def test_saved_flags_that_do_not_match_the_audit_are_refused(tmp_path, capsys):
    save_audit(audit(_flagged_table(), ["hygiene"]), tmp_path)
    flags = tmp_path / "pair_flags.csv"
    flags.write_text("".join(flags.read_text().splitlines(keepends=True)[:50]), encoding="utf-8")
    one_line_error(*cli(capsys, "gate", tmp_path / "audit.json"), flags, "not from the same audit")


def test_training_from_a_saved_audit_checks_the_data(tmp_path):
    from prefaudit.train import train_dpo

    table = _flagged_table()
    save_audit(audit(table, ["hygiene"]), tmp_path / "a")
    saved = read_audit(tmp_path / "a" / "audit.json")
    other = _flagged_table(n_same=149)
    with pytest.raises(DataFormatError, match="content_sha256"):
        train_dpo(other, "no-such-model", tmp_path / "out", audit_result=saved, force=True)
    (tmp_path / "a" / "pair_flags.csv").unlink()
    partial = read_audit(tmp_path / "a" / "audit.json")
    assert not partial.flags_complete
    with pytest.raises(DataFormatError, match="pair_flags.csv"):
        train_dpo(table, "no-such-model", tmp_path / "out", audit_result=partial, force=True,
                  drop_flags=("identical_responses",))
    assert not (tmp_path / "out").exists()


def test_hygiene_always_runs_so_the_default_gate_measures_it(capsys):
    table = _flagged_table(n_same=0, n_ok=20)
    result = audit(table, ["length"])
    assert list(result.results) == ["hygiene", "length"]
    outcome = {o.metric: o for o in apply_policy(result, None).outcomes}["hygiene.contradiction_share"]
    assert outcome.observed == 0.0 and outcome.status == "pass"
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert "hygiene always runs" in " ".join(capsys.readouterr().out.split())


# --- cache damage: the embedding store ---------------------------------------------------------

class _HashEncoder:
    """A stand-in sentence encoder: a unit vector from each text's hash (the cache is under test)."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        rows = [np.random.default_rng(list(t.encode())).standard_normal(8) for t in texts]
        return np.asarray([r / np.linalg.norm(r) for r in rows], dtype=np.float32)


def test_truncated_embedding_shard_is_discarded_and_recomputed(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "load_model", lambda model=None, device=None: _HashEncoder())
    model = str(tmp_path)  # an existing folder: its path is the model id
    prompts = [f"Prompt number {i}" for i in range(24)]
    E.embed(prompts[:12], model, cache_dir=tmp_path)  # an earlier run: the first shard
    full = E.embed(prompts, model, cache_dir=tmp_path)  # the second shard: the other 12
    folder = model_folder(tmp_path, E.resolve_model(model)[0])
    shards = sorted(folder.glob("*.npz"))
    assert len(shards) == 2
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])  # killed while writing (or a disk that filled up)
    E._STORES.clear()  # a fresh process reads the shards back
    before = E.texts_encoded()
    again = E.embed(prompts, model, cache_dir=tmp_path)
    assert E.texts_encoded() - before == 12
    assert E._store(tmp_path, E.resolve_model(model)[0]).discarded == [shards[1]]
    assert E.shards_discarded() == 1  # what coverage reports in its notes
    np.testing.assert_array_equal(again, full)
    E._STORES.clear()
    assert len(EmbeddingStore(folder)) == 24  # the recompute was cached again
    shards = sorted(folder.glob("*.npz"))
    with np.load(shards[0]) as z:  # a readable shard whose arrays do not match is discarded too
        keys, vectors = z["keys"], z["vectors"]
    np.savez(shards[0], keys=keys, vectors=vectors[:5])
    store = EmbeddingStore(folder)
    assert store.discarded == [shards[0]] and len(store) == 12


@pytest.mark.slow
def test_truncated_embedding_shard_gives_a_clean_runs_coverage_numbers(tmp_path, sample_dir):
    table = load(sample_dir / "llmbar_natural.json").table
    clean = analyze_coverage(table, cache_dir=tmp_path / "clean")
    cache = tmp_path / "cache"
    analyze_coverage(table.iloc[:40], cache_dir=cache)  # an earlier run: the first shard
    analyze_coverage(table, cache_dir=cache)  # the second shard: the other prompts
    folder = model_folder(cache, E.resolve_model(None)[0])
    shards = sorted(folder.glob("*.npz"))
    assert len(shards) == 2
    n_second = len(EmbeddingStore(folder)) - len(set(table["prompt"].iloc[:40]))
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])  # killed while writing (or a disk that filled up)
    E._STORES.clear()  # a fresh process reads the shards back
    before = E.texts_encoded()
    again = analyze_coverage(table, cache_dir=cache)
    assert E.texts_encoded() - before == n_second > 0
    assert E._store(cache, E.resolve_model(None)[0]).discarded == [shards[1]]
    assert any("1 damaged shard(s) of the embedding cache were" in n for n in again.notes)
    assert again.flat_metrics() == clean.flat_metrics()
    pd.testing.assert_frame_equal(again.tables["clusters"], clean.tables["clusters"])
    E._STORES.clear()
    assert len(EmbeddingStore(folder)) == len(set(table["prompt"]))  # the recompute was saved again
