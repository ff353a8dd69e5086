"""End to end: the ``prefaudit`` command run as a subprocess on the bundled samples.

Only the hygiene analyzer is run (``--analyzers hygiene``), so these tests do not depend on
the model-backed analyzers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from prefaudit import testing
from prefaudit.analyzers.hygiene import analyze_hygiene
from prefaudit.loaders import load

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return testing.run_cli(*args, cwd=REPO, timeout=300)


def audit_cli(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("audit", data, "--analyzers", "hygiene", "--out", out, "--no-pdf", *extra)


@pytest.fixture(scope="module")
def planted_audit(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    proc = audit_cli(sample_dir / "planted_defects.jsonl", out)
    return proc, out


def test_audit_writes_flat_metrics_equal_to_the_library(planted_audit, sample_dir):
    proc, out = planted_audit
    doc = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    table, _ = load(sample_dir / "planted_defects.jsonl")
    expected = analyze_hygiene(table).flat_metrics()
    assert {k: v for k, v in doc["metrics"].items() if k.startswith("hygiene.")} == expected
    assert doc["metrics"]["hygiene.contradiction_share"] == pytest.approx(8 / 147)
    assert doc["summary"]["n_pairs"] == 147
    assert doc["load_report"]["formats"] == ["trl_standard"]
    assert set(doc["analyzers"]) == {"hygiene"}
    assert doc["analyzers"]["hygiene"]["flag_counts"]["duplicate_pair"] == 6
    # The worst flagged pairs keep their text for the report.
    assert doc["examples"]["planted-contra-1a"]["chosen"]


def test_audit_writes_pair_flags_csv(planted_audit, sample_dir):
    _, out = planted_audit
    flags = pd.read_csv(out / "pair_flags.csv", keep_default_na=False)
    assert list(flags.columns) == ["pair_id", "analyzer", "reason", "score", "detail"]
    assert set(flags["analyzer"]) == {"hygiene"}
    records = [json.loads(line) for line in
               (sample_dir / "planted_defects.jsonl").read_text(encoding="utf-8").splitlines()]
    planted = {r["id"] for r in records if r["id"].startswith("planted-")}
    near = flags["reason"] == "near_identical"  # two real LLMBar grammar pairs, near-identical by design
    assert set(flags.loc[near, "pair_id"]) == {"llmbar-natural-024", "llmbar-natural-077"}
    assert set(flags.loc[~near, "pair_id"]) == planted
    row = flags[(flags["pair_id"] == "planted-mojibake-1")].iloc[0]
    assert (row["reason"], row["detail"]) == ("encoding_damage", "chosen: mojibake 'â€™'")


def test_planted_defects_fail_the_default_gate(planted_audit):
    proc, out = planted_audit
    assert proc.returncode == 1, proc.stderr
    verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["status"] == "fail"
    failing = [r["metric"] for r in verdict["rules"] if r["status"] == "fail"]
    assert failing == ["hygiene.contradiction_share"]
    assert "FAIL: hygiene.contradiction_share" in proc.stdout


def test_clean_sample_passes_and_audit_is_deterministic(sample_dir, tmp_path):
    data = sample_dir / "llmbar_natural.json"
    first, second = audit_cli(data, tmp_path / "a"), audit_cli(data, tmp_path / "b")
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0
    docs = [json.loads((tmp_path / d / "audit.json").read_text(encoding="utf-8")) for d in "ab"]
    assert docs[0]["metrics"] == docs[1]["metrics"]
    # the only flags: two real grammar pairs ("is"/"are") that are near-identical by design
    assert (docs[0]["metrics"]["hygiene.flagged_share"] == docs[0]["metrics"]["hygiene.near_identical_share"]
            == 0.02)
    assert ((tmp_path / "a" / "pair_flags.csv").read_bytes()
            == (tmp_path / "b" / "pair_flags.csv").read_bytes())


def test_inspect_json_reports_counts_and_load_report(sample_dir):
    proc = run_cli("inspect", sample_dir / "pandalm_testset_v1.json", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["formats"] == ["pandalm"]
    assert (info["n_pairs"], info["n_judgements"], info["n_annotators"]) == (999, 2997, 3)
    assert info["multi_annotator"] is True
    events = {e["reason"]: e["count"] for e in info["load_report"]["events"]}
    # Data README: six responses stored as JSON true, 54 empty responses, all kept.
    assert sum(c for r, c in events.items() if r.startswith("coerced_bool")) == 6
    assert sum(c for r, c in events.items() if r.startswith("empty_")) == 54
    assert info["load_report"]["n_dropped"] == 0


def test_bad_json_line_exits_2_naming_file_and_line(sample_dir, tmp_path):
    lines = (sample_dir / "planted_defects.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    lines[2] = lines[2][:-1]  # drop the closing brace of the third record
    bad = tmp_path / "broken.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = audit_cli(bad, tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "broken.jsonl" in proc.stderr and "line 3" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_missing_field_and_usage_errors_exit_2(sample_dir, tmp_path):
    record = json.loads((sample_dir / "planted_defects.jsonl").read_text(encoding="utf-8").splitlines()[0])
    record.pop("chosen")
    bad = tmp_path / "no_chosen.jsonl"
    bad.write_text(json.dumps(record) + "\n", encoding="utf-8")
    proc = run_cli("inspect", bad, "--format", "trl_standard")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no_chosen.jsonl" in proc.stderr and "'chosen'" in proc.stderr
    proc = audit_cli(sample_dir / "llmbar_natural.json", tmp_path / "o", "--analyzers", "hygiene,nonsense")
    assert proc.returncode == 2 and "nonsense" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("inspect", tmp_path / "does_not_exist.jsonl")
    assert proc.returncode == 2 and "does_not_exist.jsonl" in proc.stderr and "Traceback" not in proc.stderr


def test_audit_hands_vote_share_to_length_and_shows_final_orientation(sample_dir):
    """Length's low-support flag must fire on split votes when agreement runs first, and the
    worst-pair examples must show the majority (training) orientation, not the first judgement."""
    from prefaudit.audit import audit
    from prefaudit.loaders import load
    from prefaudit.schema import to_pairs

    table, report = load(sample_dir / "pandalm_testset_v1.json")
    result = audit(table, ["agreement", "length"], options={"agreement": {"n_bootstrap": 50}})
    assert result.metrics["length.n_longer_chosen_low_support"] > 0
    pairs = to_pairs(table).set_index("pair_id")
    assert result.examples
    for pid, ex in result.examples.items():
        assert ex["chosen"] == pairs.loc[pid, "chosen"] and ex["rejected"] == pairs.loc[pid, "rejected"]


def test_audit_collapses_once_and_gives_each_analyzer_the_same_numbers_as_alone(sample_dir):
    """audit() hands one to_pairs collapse to every analyzer that reads pairs; each analyzer's
    metrics and flags equal a call of it alone on the table (which collapses by itself)."""
    from prefaudit import audit
    from prefaudit.analyzers.length import analyze_length
    from prefaudit.schema import to_pairs

    table = load(sample_dir / "pandalm_testset_v1.json").table  # three annotators per pair
    assert len(to_pairs(table)) < len(table)
    together = audit(table, ["hygiene", "length"], seed=0)
    for name, alone in (("hygiene", analyze_hygiene(table)), ("length", analyze_length(table, seed=0))):
        assert together.results[name].flat_metrics() == alone.flat_metrics()
        pd.testing.assert_frame_equal(together.results[name].pair_flags, alone.pair_flags)
    assert together.examples and all(
        set(ex) == {"prompt", "chosen", "rejected", "source"} for ex in together.examples.values())


def test_the_command_gives_arrow_the_c_allocator_unless_told_otherwise(monkeypatch):
    """The CLI process hands Arrow's freed memory back to NumPy and Python (see
    prefaudit.env.arrow_system_allocator); ARROW_DEFAULT_MEMORY_POOL, when set, wins."""
    import pyarrow as pa

    from prefaudit.env import ARROW_POOL_ENV, arrow_system_allocator

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv(ARROW_POOL_ENV, "mimalloc")
        arrow_system_allocator()
        assert pa.default_memory_pool().backend_name == before.backend_name
        monkeypatch.delenv(ARROW_POOL_ENV)
        arrow_system_allocator()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)
