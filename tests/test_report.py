"""The audit report: model, figures, escaping of dataset text, HTML/PDF/JSON agreement, CLI."""

from __future__ import annotations

import base64
import importlib
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefaudit.audit import ANALYZERS, AuditResult, audit
from prefaudit.cli import main
from prefaudit.loaders import load
from prefaudit.loaders.report import LoadReport
from prefaudit.report import build_report_model, format_number, render_html, render_pdf, write_reports
from prefaudit.report.figures import draw
from prefaudit.report.model import FigureSpec
from prefaudit.results import AnalyzerResult, make_flags

pypdf = pytest.importorskip("pypdf")

XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</textarea><b onmouseover=alert(2)>x</b>",
       "# Heading\n\n**bold** [link](javascript:alert(3)) `code`"]


def _importable(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            importlib.import_module(ANALYZERS[name].split(":")[0])
        except ImportError:
            continue
        out.append(name)
    return out


class _Tags(HTMLParser):
    """Collects every start tag with its attributes and all visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, attrs))

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    p.close()
    return p


def _svgs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)]


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() or "" for page in reader.pages)


def _hand_built() -> AuditResult:
    """An audit with every analyzer's figure shapes, as the analyzers store them."""
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(30)]
    agreement = AnalyzerResult("agreement")
    agreement.add_metric("krippendorff_alpha", 0.61234, "chance-corrected agreement", low=0.55, high=0.67)
    agreement.figures["cohen_kappa"] = {"annotators": ["ann1", "ann2", "ann3"],
                                        "kappa": [[1.0, 0.85, None], [0.85, 1.0, 0.86], [None, 0.86, 1.0]]}
    agreement.figures["annotator_reliability"] = {"annotators": ["ann1", "ann2", "ann3"],
                                                  "ds_accuracy": [0.9, 0.8, 0.95], "n_labels": [30, 30, 29]}
    agreement.figures["annotator_confusion"] = {"annotators": ["ann1", "ann2"], "labels": ["A", "B"],
                                                "confusion": [[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.1, 0.9]]]}
    agreement.pair_flags = make_flags(ids[:3], "contested", [0.4, 0.3, 0.2], "two of three labels disagree")
    judges = AnalyzerResult("judges")
    judges.add_metric("first_position_share", 0.6321, "share won by the response shown first", low=0.6, high=0.66)
    judges.figures["first_position_share"] = {"annotators": ["ann1", "ann2"], "share": [0.7, 0.52],
                                              "low": [0.62, 0.45], "high": [0.77, 0.59], "n": [120, 150]}
    judges.figures["generator_win_rate"] = {"labels": ["gpt-4", "llama"], "win_rate": [0.9, 0.1],
                                            "low": [0.85, 0.06], "high": [0.94, 0.15], "n": [200, 200]}
    length = AnalyzerResult("length")
    length.add_metric("share_longer_chosen", 0.7012, "share of non-tied pairs whose chosen is longer",
                      low=0.65, high=0.75)
    length.figures["by_length_difference"] = {"bin_edges": [0, 10, 100, 1000], "share": [0.5, 0.6, 0.8],
                                              "low": [0.4, 0.5, 0.7], "high": [0.6, 0.7, 0.9], "n": [10, 12, 8]}
    coverage = AnalyzerResult("coverage")
    coverage.add_metric("n_clusters", 3, "number of prompt clusters")
    coverage.figures["map"] = {"x": rng.normal(size=30).tolist(), "y": rng.normal(size=30).tolist(),
                               "cluster": [XSS[i % 3] for i in range(30)]}
    coverage.tables["clusters"] = pd.DataFrame({"label": XSS[:3], "size": [10, 10, 10]})
    length.figures["logit_curve"] = {"log2_ratio": np.linspace(-4, 4, 9).tolist(),
                                     "p_chosen": np.linspace(0.2, 0.8, 9).tolist()}
    coverage.figures["cluster_shares"] = {"cluster": list(range(9)), "label": [f"topic {i}" for i in range(9)],
                                          "pair_share": [0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05]}
    coverage.figures["odd_shape"] = {"nested": {"deep": [1, {"x": 2}]}}
    margins = AnalyzerResult("margins")
    margins.add_metric("share_reference_prefers_rejected", 0.41, "share of pairs the reference ranks the other way")
    margins.figures["margin_histogram"] = {"values": rng.normal(size=200).tolist()}
    return AuditResult(summary={"n_pairs": 30, "n_judgements": 90, "sources": ["hand.jsonl"]},
                       load_report=LoadReport(["hand.jsonl"], ["trl_standard"], 30, 90),
                       results={"agreement": agreement, "judges": judges, "coverage": coverage, "length": length,
                                "margins": margins},
                       not_run={"hygiene": "not requested"},
                       examples={pid: {"prompt": "why?", "chosen": "yes", "rejected": "no", "source": "hand"}
                                 for pid in ids[:3]})


@pytest.fixture(scope="module")
def pandalm_run(tmp_path_factory, sample_dir: Path) -> Path:
    """A real audit of the bundled PandaLM sample through the CLI (gate included)."""
    out = tmp_path_factory.mktemp("pandalm")
    names = _importable(["hygiene", "agreement", "length"])
    rc = main(["audit", str(sample_dir / "pandalm_testset_v1.json"), "--analyzers", ",".join(names),
               "--out", str(out)])
    assert rc in (0, 1)  # 1: the bundled policy fails this sample (54 empty responses)
    return out


def test_cli_writes_reports_next_to_audit(pandalm_run: Path) -> None:
    for name in ("audit.json", "report.html", "report.pdf"):
        assert (pandalm_run / name).stat().st_size > 1000
    html = (pandalm_run / "report.html").read_text(encoding="utf-8")
    d = json.loads((pandalm_run / "audit.json").read_text(encoding="utf-8"))
    assert d["verdict"] is not None
    word = d["verdict"]["status"].upper()
    assert f'<span class="badge">{word}</span>' in html
    assert html.index('id="verdict"') < html.index('class="toc"')  # the verdict comes first
    for name, reason in d["not_run"].items():
        assert f'id="sec-{name}"' in html and reason in html  # never a blank section
    assert "999" in html and "pandalm" in html  # dataset summary and load report


def test_same_numbers_in_json_html_and_pdf(pandalm_run: Path) -> None:
    d = json.loads((pandalm_run / "audit.json").read_text(encoding="utf-8"))
    html = (pandalm_run / "report.html").read_text(encoding="utf-8")
    _, pdf_text = _pdf_text((pandalm_run / "report.pdf").read_bytes())
    pdf_flat = re.sub(r"\s+", " ", pdf_text)
    rows = dict(re.findall(r'<tr data-metric="([^"]+)"><td class="mname">[^<]*</td><td class="num value">([^<]*)</td>',
                           html))
    checked = 0
    for analyzer, r in d["analyzers"].items():
        for name, m in r["metrics"].items():
            shown = format_number(m["value"])
            assert rows[f"{analyzer}.{name}"] == shown
            if m["value"] is not None:
                assert float(shown.replace(",", "")) == pytest.approx(m["value"], rel=1e-3, abs=1e-12)
                assert d["metrics"][f"{analyzer}.{name}"] == m["value"]
            assert re.search(re.escape(name) + r"\s+" + re.escape(shown), pdf_flat), (name, shown)
            checked += 1
    assert checked >= 10


def test_rerender_from_audit_json_is_identical(pandalm_run: Path, tmp_path: Path) -> None:
    assert main(["report", str(pandalm_run / "audit.json"), "--out", str(tmp_path), "--no-pdf"]) == 0
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == \
        (pandalm_run / "report.html").read_text(encoding="utf-8")
    assert not (tmp_path / "report.pdf").exists()


def test_pdf_has_section_titles_and_sane_pages(pandalm_run: Path) -> None:
    n_pages, text = _pdf_text((pandalm_run / "report.pdf").read_bytes())
    assert 3 <= n_pages <= 60
    flat = re.sub(r"\s+", " ", text)
    model = build_report_model(pandalm_run / "audit.json")
    for s in model.sections:
        assert s.title in flat
    assert "Contents" in flat and "Load report" in flat and "page 1 of" in flat


def test_report_cli_bad_input_exits_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "audit.json"
    bad.write_text('{"not": "an audit"}', encoding="utf-8")
    assert main(["report", str(bad)]) == 2
    assert "not a prefaudit audit.json" in capsys.readouterr().err


def _xss_table(tmp_path: Path) -> Path:
    long_line = "A" * 10_000
    rows = []
    for i, bad in enumerate(XSS):
        rows.append({"prompt": bad + " " + long_line, "chosen": bad, "rejected": bad})  # identical pair: flagged
        rows.append({"prompt": f"fine prompt {i}", "chosen": f"a good answer {i}", "rejected": f"worse {i}"})
    path = tmp_path / "xss.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_dataset_text_is_escaped_and_still_readable(tmp_path: Path) -> None:
    table, report = load(_xss_table(tmp_path))
    result = audit(table, ["hygiene"], load_report=report)
    hygiene = result.results["hygiene"]
    hygiene.figures["cluster_map"] = {"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 2.0], "cluster": XSS[:3]}
    html = render_html(result)
    parsed = _parse(html)
    assert not [t for t, _ in parsed.tags if t in ("script", "iframe", "object", "embed", "textarea")]
    assert not [(t, a) for t, attrs in parsed.tags for a, _ in attrs if a.lower().startswith("on")]
    assert not [v for _, attrs in parsed.tags for a, v in attrs if v and "javascript:" in v.lower()]
    text = "".join(parsed.text)
    for bad in XSS[:3]:
        assert bad in text  # shown literally, as text
    # the 10,000-character line is cut, with the full length stated
    assert len(re.findall(r"prompt \(10,0\d\d characters, showing the first 1,500\)", text)) == 4
    svgs = _svgs(html)
    assert svgs
    for svg in svgs:
        root = ET.fromstring(svg)
        for el in root.iter():
            assert not el.tag.endswith("script") and not el.tag.endswith("foreignObject")
            assert not [a for a in el.attrib if a.lower().startswith("on")]
    assert any(b"&lt;script&gt;alert(1)&lt;/script&gt;" in s for s in svgs)  # the label is drawn as text


def test_html_is_self_contained() -> None:
    html = render_html(_hand_built())
    parsed = _parse(html)
    for tag, attrs in parsed.tags:
        for a, v in attrs:
            if a in ("src", "href", "srcset", "action", "data", "poster"):
                assert v.startswith(("data:", "#")), (tag, a, v[:60])
        assert tag not in ("link", "script", "iframe")
    assert not re.search(r"url\((?!['\"]?data:)", html)
    assert "Content-Security-Policy" in html


def test_every_analyzer_has_a_section_with_figures_and_fallbacks() -> None:
    result = _hand_built()
    model = build_report_model(result)
    assert [s.name for s in model.sections] == list(ANALYZERS)
    by_name = {s.name: s for s in model.sections}
    assert not by_name["hygiene"].ran and by_name["hygiene"].not_run_reason == "not requested"
    kinds = {f.name: draw(f).kind for s in model.sections for f in s.figures}
    assert kinds == {"cohen_kappa": "heatmap", "annotator_reliability": "bars", "annotator_confusion": "heatmaps",
                     "by_length_difference": "bars", "logit_curve": "line", "map": "scatter",
                     "cluster_shares": "bars", "odd_shape": "table", "margin_histogram": "histogram",
                     "first_position_share": "bars", "generator_win_rate": "bars"}
    judges = by_name["judges"]  # the two alphas stand at the top of the judges section
    assert judges.title == "Judges and presentation order"
    assert [m.key for m in judges.metrics] == ["agreement.krippendorff_alpha", "judges.first_position_share"]
    alpha = by_name["agreement"].metrics[0]
    assert (alpha.key, alpha.value_text, alpha.interval_text) == ("agreement.krippendorff_alpha", "0.6123",
                                                                  "[0.55, 0.67]")
    html = render_html(model)
    assert "Not run:</b> not requested" in html
    assert "No policy evaluated" in html and "NO POLICY" in html
    assert "This figure's data has a shape the report does not plot" in html
    assert html.count("<details") == 9  # 3 worst pairs x (prompt, chosen, rejected)
    assert render_html(result) == html  # deterministic, figures included


@pytest.mark.parametrize("data", [None, [], "text", {"x": [1, 2], "y": [1]}, {"counts": [1, 2], "edges": [0]},
                                  {"a": "b"}, [[1, 2], [3]], {"values": [None] * 50}, {"m": [[1, 2], [3, 4]]}])
def test_odd_figure_data_never_crashes(data) -> None:  # noqa: ANN001
    out = draw(FigureSpec("coverage", "weird", "Weird", data))
    assert out.uri.startswith("data:image/svg+xml;base64,") or out.kind in ("table", "values", "missing")


def test_big_scatter_is_rasterised_inside_svg() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    out = draw(FigureSpec("coverage", "map", "Map", {"x": rng.normal(size=n).tolist(),
                                                      "y": rng.normal(size=n).tolist(),
                                                      "cluster": [str(i % 5) for i in range(n)]}))
    svg = base64.b64decode(out.uri.split(",", 1)[1])
    assert out.kind == "scatter" and b"<image" in svg and len(svg) < 1_000_000


def test_verdict_badge_lists_failing_rules_first() -> None:
    result = _hand_built()
    result.verdict = {"status": "fail", "policy": "default", "rules": [
        {"metric": "length.share_longer_chosen", "status": "pass", "observed": 0.55, "threshold": "<= 0.7",
         "severity": "fail", "message": ""},
        {"metric": "agreement.krippendorff_alpha", "status": "fail", "observed": 0.61234, "threshold": ">= 0.667",
         "severity": "fail", "message": "annotation is unreliable"},
        {"metric": "margins.share_reference_prefers_rejected", "status": "not_measured", "observed": None,
         "min": None, "max": 0.5, "severity": "warn", "message": ""}]}
    model = build_report_model(result)
    assert model.verdict.status == "FAIL"
    assert model.verdict.headline.startswith("3 rule(s): 1 failed, 1 passed, 1 not measured")
    assert [r.metric for r in model.verdict.rules][0] == "agreement.krippendorff_alpha"
    assert [r.status for r in model.verdict.rules] == ["FAIL", "NOT MEASURED", "PASS"]
    assert model.verdict.rules[1].bound_text == "<= 0.5"
    html = render_html(model)
    assert '<span class="badge">FAIL</span>' in html and "annotation is unreliable" in html


def test_write_reports_and_render_pdf(tmp_path: Path) -> None:
    result = _hand_built()
    paths = write_reports(result, tmp_path, pdf=False)
    assert set(paths) == {"html"} and not (tmp_path / "report.pdf").exists()
    pdf = render_pdf(result)
    n_pages, text = _pdf_text(pdf)
    flat = re.sub(r"\s+", " ", text)
    assert 2 <= n_pages <= 20
    assert "Reference-model margins" in flat and "share_reference_prefers_rejected 0.41" in flat
