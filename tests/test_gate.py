"""The policy gate: rule semantics, policy errors, verdict JSON / JUnit, and CLI exit codes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from prefaudit import testing
from prefaudit.audit import AuditResult
from prefaudit.errors import PolicyError
from prefaudit.gate import (
    NOT_MEASURED,
    apply_policy,
    default_policy_path,
    known_metric_names,
    load_policy,
    parse_policy,
)
from prefaudit.loaders.report import LoadReport
from prefaudit.results import AnalyzerResult

REPO = Path(__file__).resolve().parent.parent


def policy(**rules: dict) -> object:
    return parse_policy({"rules": {k.replace("__", "."): v for k, v in rules.items()}}, source="test.toml")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return testing.run_cli(*args, cwd=cwd, timeout=120)


# --- rule semantics -----------------------------------------------------------------------------

def test_max_rule_is_inclusive_and_fails_above():
    p = policy(length__share_longer_chosen={"max": 0.6})
    assert apply_policy({"length.share_longer_chosen": 0.6}, p).status == "pass"
    v = apply_policy({"length.share_longer_chosen": 0.61}, p)
    assert v.status == "fail"
    assert v.outcomes[0].observed == pytest.approx(0.61)
    assert "length.share_longer_chosen = 0.61" in v.reasons[0] and "<= 0.6" in v.reasons[0]


def test_min_and_range_rules():
    p = policy(agreement__krippendorff_alpha={"min": 0.667},
               length__share_longer_chosen={"min": 0.4, "max": 0.6})
    ok = {"agreement.krippendorff_alpha": 0.9, "length.share_longer_chosen": 0.5}
    assert apply_policy(ok, p).status == "pass"
    low = apply_policy({"agreement.krippendorff_alpha": 0.5, "length.share_longer_chosen": 0.5}, p)
    assert [o.status for o in low.outcomes] == ["fail", "pass"]
    below_range = apply_policy({"agreement.krippendorff_alpha": 0.9, "length.share_longer_chosen": 0.3}, p)
    assert [o.status for o in below_range.outcomes] == ["pass", "fail"]
    assert below_range.outcomes[1].threshold == "in [0.4, 0.6]"


def test_warn_only_violations_give_warn_and_exit_zero_unless_strict():
    p = policy(hygiene__duplicate_pair_share={"max": 0.05, "severity": "warn"},
               hygiene__contradiction_share={"max": 0.02})
    v = apply_policy({"hygiene.duplicate_pair_share": 0.2, "hygiene.contradiction_share": 0.0}, p)
    assert v.status == "warn"
    assert v.exit_code() == 0 and v.exit_code(strict=True) == 1
    both = apply_policy({"hygiene.duplicate_pair_share": 0.2, "hygiene.contradiction_share": 0.1}, p)
    assert both.status == "fail" and both.exit_code() == 1
    assert both.reasons[0].startswith("FAIL: hygiene.contradiction_share")  # fails listed first
    assert both.reasons[1].startswith("WARN: hygiene.duplicate_pair_share")


def test_missing_metric_is_not_measured_unless_required():
    p = policy(agreement__flip_rate={"max": 0.2}, margins__reference_accuracy={"min": 0.5})
    v = apply_policy({"agreement.flip_rate": None}, p)  # None: analyzer ran but could not measure it
    assert [o.status for o in v.outcomes] == [NOT_MEASURED, NOT_MEASURED]
    assert v.status == "pass" and v.to_dict()["counts"]["not_measured"] == 2

    req = policy(agreement__flip_rate={"max": 0.2, "required": True},
                 margins__reference_accuracy={"min": 0.5, "required": True, "severity": "warn"})
    v = apply_policy({"hygiene.flagged_share": 0.0}, req)
    assert [o.status for o in v.outcomes] == ["fail", "warn"]
    assert v.status == "fail"
    assert "not measured" in v.reasons[0]


def test_nan_and_non_numbers_count_as_not_measured():
    p = policy(length__binomial_p={"min": 0.01})
    assert apply_policy({"length.binomial_p": float("nan")}, p).outcomes[0].status == NOT_MEASURED
    assert apply_policy({"length.binomial_p": "n/a"}, p).outcomes[0].status == NOT_MEASURED


def test_evaluate_accepts_audit_result_and_audit_json_dict():
    res = AnalyzerResult("length")
    res.add_metric("share_longer_chosen", 0.72, low=0.65, high=0.79)
    audit = AuditResult(summary={"content_sha256": "abc"}, load_report=LoadReport(), results={"length": res})
    p = policy(length__share_longer_chosen_low={"max": 0.6, "severity": "warn"})
    v = apply_policy(audit, p)
    assert v.status == "warn" and v.outcomes[0].observed == pytest.approx(0.65)
    assert v.data_sha256 == "abc"
    assert apply_policy(audit.to_dict(), p).to_dict() == v.to_dict()
    with pytest.raises(TypeError):
        apply_policy(["not", "metrics"], p)


# --- policy files ------------------------------------------------------------------------------

def test_default_policy_is_valid_and_every_rule_has_a_reason(tmp_path):
    p = load_policy()
    assert p.name == "default" and len(p.rules) >= 8
    metrics = {r.metric for r in p.rules}
    for needed in ("hygiene.contradiction_share", "agreement.krippendorff_alpha",
                   "length.share_longer_chosen", "margins.share_reference_prefers_rejected"):
        assert needed in metrics
    text = default_policy_path().read_text(encoding="utf-8")
    # every rule table is preceded by a comment (the justification of its threshold) or another rule
    blocks = re.split(r"\n(?=\[rules\.)", text)
    for block in blocks[1:]:
        rule = block.splitlines()[0]
        previous = blocks[blocks.index(block) - 1].rstrip().splitlines()
        assert previous[-1].startswith("#") or previous[-1].startswith("message"), rule
    assert all(r.message for r in p.rules)


def test_unknown_metric_typo_is_caught_with_file_key_and_suggestion(tmp_path):
    f = write(tmp_path / "p.toml", '[rules."length.share_longer_chosn"]\nmax = 0.6\n')
    with pytest.raises(PolicyError) as exc:
        load_policy(f)
    msg = str(exc.value)
    assert str(f) in msg and 'rules."length.share_longer_chosn"' in msg
    assert "did you mean 'length.share_longer_chosen'" in msg


@pytest.mark.parametrize("body, expected", [
    ('[rules."length.share_longer_chosen"]\nmax = "0.6"\n',
     r'rules\."length\.share_longer_chosen"\.max: expected a finite number'),
    ('[rules."length.share_longer_chosen"]\nmin = 0.7\nmax = 0.6\n',
     r"min \(0\.7\) is greater than max \(0\.6\)"),
    ('[rules."length.share_longer_chosen"]\nseverity = "warn"\n', r"needs 'min', 'max' or both"),
    ('[rules."length.share_longer_chosen"]\nmax = 0.6\nseverity = "error"\n', r"\.severity: expected one of"),
    ('[rules."length.share_longer_chosen"]\nmax = 0.6\nmaximum = 1\n', r"\.maximum: unknown key"),
    ('[rules."length.share_longer_chosen"]\nmax = 0.6\nrequired = "yes"\n',
     r"\.required: expected true or false"),
    ('[rules]\n"length.share_longer_chosen" = 0.6\n', r"expected a table"),
    ('[policy]\nname = "x"\n', r"no rules"),
    ('[rule."length.share_longer_chosen"]\nmax = 0.6\n', r"unknown top-level key\(s\) \['rule'\]"),
    ('[rules."length.share_longer_chosen"\nmax = 0.6\n', r"invalid TOML"),
])
def test_malformed_policies_raise_policy_error_naming_file_and_key(tmp_path, body, expected):
    f = write(tmp_path / "bad.toml", body)
    with pytest.raises(PolicyError, match=expected) as exc:
        load_policy(f)
    assert str(exc.value).startswith(str(f))


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.toml")


def test_interval_ends_are_known_metric_names():
    names = known_metric_names()
    assert {"agreement.krippendorff_alpha_low", "length.share_longer_chosen_high"} <= names
    assert "length.share_longer_chosn" not in names


# --- verdict serialisations ----------------------------------------------------------------------

def test_verdict_json_and_junit_xml():
    p = policy(hygiene__contradiction_share={"max": 0.02},
               hygiene__duplicate_pair_share={"max": 0.05, "severity": "warn"},
               agreement__flip_rate={"max": 0.2})
    v = apply_policy({"hygiene.contradiction_share": 0.1, "hygiene.duplicate_pair_share": 0.3}, p)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["status"] == "fail" and d["counts"] == {"pass": 0, "warn": 1, "fail": 1, "not_measured": 1}
    assert [r["metric"] for r in d["rules"]] == ["hygiene.contradiction_share",
                                                 "hygiene.duplicate_pair_share", "agreement.flip_rate"]
    suite = ET.fromstring(v.to_junit_xml()).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["hygiene.contradiction_share"].find("failure") is not None
    assert "WARN" in cases["hygiene.duplicate_pair_share"].find("system-out").text
    assert cases["agreement.flip_rate"].find("skipped") is not None
    strict = ET.fromstring(v.to_junit_xml(strict=True)).find("testsuite")
    assert strict.get("failures") == "2"


# --- CLI -----------------------------------------------------------------------------------------

def saved_audit(tmp_path: Path, **metrics: float) -> Path:
    """An audit.json as `prefaudit audit` writes it, with the given hygiene/length metrics."""
    results = {}
    for key, value in metrics.items():
        analyzer, name = key.split("__")
        results.setdefault(analyzer, AnalyzerResult(analyzer)).add_metric(name, value)
    audit = AuditResult(summary={"content_sha256": "f00"}, load_report=LoadReport(), results=results)
    return audit.write(tmp_path / "audit_out")["audit"]


POLICY = """
[rules."hygiene.contradiction_share"]
max = 0.02
severity = "fail"
[rules."length.share_longer_chosen"]
max = 0.6
severity = "warn"
"""


def test_cli_gate_exit_codes_verdict_and_junit(tmp_path):
    pol = write(tmp_path / "policy.toml", POLICY)
    clean = saved_audit(tmp_path / "a", hygiene__contradiction_share=0.0, length__share_longer_chosen=0.5)
    r = run_cli("gate", str(clean), "--policy", str(pol), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "gate: PASS" in r.stdout
    assert json.loads((clean.parent / "verdict.json").read_text())["status"] == "pass"

    warn = saved_audit(tmp_path / "b", hygiene__contradiction_share=0.0, length__share_longer_chosen=0.7)
    assert run_cli("gate", str(warn), "--policy", str(pol), cwd=tmp_path).returncode == 0
    junit = tmp_path / "reports" / "gate.xml"
    r = run_cli("gate", str(warn), "--policy", str(pol), "--strict", "--junit", str(junit), cwd=tmp_path)
    assert r.returncode == 1 and "WARN: length.share_longer_chosen = 0.7" in r.stdout
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"

    bad = saved_audit(tmp_path / "c", hygiene__contradiction_share=0.1, length__share_longer_chosen=0.5)
    out = tmp_path / "verdict_here"
    r = run_cli("gate", str(bad), "--policy", str(pol), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 1 and "FAIL: hygiene.contradiction_share" in r.stdout
    assert json.loads((out / "verdict.json").read_text())["reasons"][0].startswith("FAIL")


def test_cli_gate_bad_input_exits_2_without_traceback(tmp_path):
    audit = saved_audit(tmp_path, hygiene__contradiction_share=0.0)
    typo = write(tmp_path / "typo.toml", '[rules."hygiene.contradiction_shar"]\nmax = 0.1\n')
    r = run_cli("gate", str(audit), "--policy", str(typo), cwd=tmp_path)
    assert r.returncode == 2
    assert "typo.toml" in r.stderr and "did you mean 'hygiene.contradiction_share'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("gate", str(tmp_path / "missing.json"), cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    not_audit = write(tmp_path / "x.json", '{"a": 1}')
    assert run_cli("gate", str(not_audit), cwd=tmp_path).returncode == 2
    assert run_cli("gate", cwd=tmp_path).returncode == 2  # usage error


def test_cli_audit_rejects_a_bad_policy_before_auditing(sample_dir, tmp_path):
    typo = write(tmp_path / "typo.toml", '[rules."length.share_longer_chosn"]\nmax = 0.6\n')
    r = run_cli("audit", str(sample_dir / "llmbar_natural.json"), "--analyzers", "hygiene",
                "--policy", str(typo), "--out", str(tmp_path / "out"), "--no-pdf", cwd=tmp_path)
    assert r.returncode == 2 and "typo.toml" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()  # nothing computed or written
    # the policy is checked first: with bad data too, the policy is what the error names
    r = run_cli("audit", str(tmp_path / "no_such_data.jsonl"), "--policy", str(typo), cwd=tmp_path)
    assert r.returncode == 2 and "typo.toml" in r.stderr and "no_such_data" not in r.stderr


def test_cli_audit_gates_planted_defects_and_writes_verdict(sample_dir, tmp_path):
    out = tmp_path / "out"
    junit = tmp_path / "junit.xml"
    r = run_cli("audit", str(sample_dir / "planted_defects.jsonl"), "--analyzers", "hygiene,length",
                "--out", str(out), "--no-pdf", "--junit", str(junit), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "gate: FAIL" in r.stdout and "FAIL: hygiene.contradiction_share" in r.stdout
    verdict = json.loads((out / "verdict.json").read_text())
    saved = json.loads((out / "audit.json").read_text())
    assert verdict["status"] == "fail" and saved["verdict"] == verdict
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"
    r = run_cli("audit", str(sample_dir / "planted_defects.jsonl"), "--analyzers", "hygiene", "--out",
                str(tmp_path / "nogate"), "--no-pdf", "--no-gate", cwd=tmp_path)
    assert r.returncode == 0 and not (tmp_path / "nogate" / "verdict.json").exists()


def test_every_metric_an_audit_produces_is_a_known_metric(sample_dir):
    from prefaudit.audit import audit
    from prefaudit.loaders import load

    table = load(sample_dir / "planted_defects.jsonl").table
    produced = set(audit(table, ["hygiene", "agreement", "length"]).metrics)
    assert produced and produced <= known_metric_names(), sorted(produced - known_metric_names())
