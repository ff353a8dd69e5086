"""``AuditResult -> ReportModel``: everything the HTML and PDF renderings show, built once.

The model is built from the audit's JSON form (``AuditResult.to_dict()`` or a saved
``audit.json``), so a report rendered right after an audit and one re-rendered later from
the saved file are identical. Every number is formatted here, by :func:`format_number`, so
the two renderings cannot show different digits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prefaudit.audit import ANALYZERS, AuditResult
from prefaudit.figures import Bars, figure_to_dict
from prefaudit.metrics import UndeclaredMetricError, declaration

#: Worst pairs shown per analyzer section.
N_WORST = 10
#: Characters of a prompt or response shown before truncation.
MAX_CHARS = 1500
#: Rows of an analyzer table shown.
MAX_TABLE_ROWS = 20
#: Characters of one table cell shown.
MAX_CELL_CHARS = 120

#: A table of this name (written by ``prefaudit evaluate``) is shown as responses side by side.
SIDE_BY_SIDE_TABLE = "most_drifted"
VERDICT_WORDS: dict[str, str] = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def section_title(analyzer: str) -> str:
    """The title an analyzer declares for its report section (:mod:`prefaudit.metrics`); an
    analyzer this version does not know (a newer audit.json) gets its name."""
    try:
        return declaration(analyzer).title
    except UndeclaredMetricError:
        return analyzer.title()


def format_number(value: Any) -> str:
    """The one formatter for numbers in both renderings.

    ``None`` (or NaN) is "not measured"; whole numbers print without decimals and with
    thousands separators; other values print with four significant digits.
    """
    if value is None or isinstance(value, bool):
        return "not measured" if value is None else str(value)
    v = float(value)
    if not math.isfinite(v):
        return "not measured"
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.4g}"


@dataclass(frozen=True)
class MetricRow:
    """One metric: ``key`` is the flat name in audit.json (``"length.share_longer_chosen"``)."""

    key: str
    name: str
    value: float | None
    value_text: str
    interval_text: str
    meaning: str


@dataclass(frozen=True)
class TextBlock:
    """A prompt or response as shown: possibly truncated, with its full length in characters."""

    text: str
    n_chars: int
    truncated: bool


@dataclass(frozen=True)
class FlagRow:
    """Why a pair was flagged: reason code, score (larger = worse) and the analyzer's detail."""

    reason: str
    score_text: str
    detail: str


@dataclass(frozen=True)
class WorstPair:
    """A flagged pair with its texts (None when the audit did not keep them)."""

    pair_id: str
    flags: list[FlagRow]
    prompt: TextBlock | None
    chosen: TextBlock | None
    rejected: TextBlock | None
    source: str


@dataclass(frozen=True)
class FigureSpec:
    """A figure to draw: the JSON form of an analyzer's typed figure (:mod:`prefaudit.figures`)
    saved under ``name``, drawn by :mod:`prefaudit.report.figures`."""

    analyzer: str
    name: str
    title: str
    data: Any


@dataclass(frozen=True)
class TableView:
    """A small table with every cell already formatted as text."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    n_rows: int


@dataclass(frozen=True)
class SideBySide:
    """One target prompt with the policy's and the reference's responses, and how far it drifted."""

    prompt: TextBlock
    policy: TextBlock
    reference: TextBlock
    caption: str


@dataclass
class Section:
    """One analyzer: ran (numbers, figures, worst pairs) or not run (with the reason)."""

    name: str
    anchor: str
    title: str
    ran: bool
    not_run_reason: str = ""
    metrics: list[MetricRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    n_flags: int = 0
    flag_counts: list[tuple[str, int]] = field(default_factory=list)
    worst_pairs: list[WorstPair] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    side_by_side: list[SideBySide] = field(default_factory=list)


@dataclass(frozen=True)
class RuleRow:
    """One gate rule as evaluated: the metric, its observed value and the bound it was held to."""

    metric: str
    status: str
    observed_text: str
    bound_text: str
    severity: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The first-screen badge: ``status`` is PASS, WARN, FAIL or NONE (no policy evaluated)."""

    status: str
    headline: str
    rules: list[RuleRow]


@dataclass
class ReportModel:
    """Everything a report shows, in reading order."""

    title: str
    verdict: Verdict
    summary: list[tuple[str, str]]
    load_summary: list[tuple[str, str]]
    load_events: list[dict[str, str]]
    at_a_glance: list[tuple[str, str, str]]
    sections: list[Section]
    config: list[tuple[str, str]]
    footer: str


def build_report_model(audit: AuditResult | Mapping[str, Any] | str | Path, *,
                       n_worst: int = N_WORST, max_chars: int = MAX_CHARS) -> ReportModel:
    """Build the report model of an audit.

    Parameters
    ----------
    audit:
        An :class:`~prefaudit.audit.AuditResult`, its ``to_dict()`` form, or the path of a
        saved ``audit.json``.
    n_worst:
        How many of the worst flagged pairs each section shows (the audit keeps the texts of
        at most ``prefaudit.audit.N_EXAMPLES`` per analyzer).
    max_chars:
        Prompts and responses longer than this are cut, with their full length stated.
    """
    d = _as_dict(audit)
    analyzers = d.get("analyzers", {}) or {}
    not_run = d.get("not_run", {}) or {}
    examples = d.get("examples", {}) or {}
    names = [n for n in ANALYZERS if n in analyzers or n in not_run]
    names += [n for n in list(analyzers) + list(not_run) if n not in names]
    sections = [
        _section(name, analyzers[name], examples, n_worst, max_chars) if name in analyzers
        else Section(name=name, anchor=f"sec-{name}", title=section_title(name), ran=False,
                     not_run_reason=str(not_run.get(name, "not run")))
        for name in dict.fromkeys(names)
    ]
    _add_alphas_to_judges(sections, analyzers)
    summary = d.get("summary", {}) or {}
    sources = summary.get("sources") or []
    return ReportModel(
        title=str((d.get("config") or {}).get("title") or "Preference data audit")
              + f": {', '.join(map(str, sources[:3])) or 'unnamed data'}"
              + (f" and {len(sources) - 3} more" if len(sources) > 3 else ""),
        verdict=_verdict(d.get("verdict")),
        summary=_summary_rows(summary),
        load_summary=_load_summary(d.get("load_report", {}) or {}),
        load_events=[{"action": str(e.get("action", "")), "count": format_number(e.get("count")),
                      "reason": str(e.get("reason", "")), "description": str(e.get("description", "")),
                      "first_records": ", ".join(map(str, e.get("first_records", [])))}
                     for e in (d.get("load_report", {}) or {}).get("events", [])],
        at_a_glance=[(s.title, s.anchor, _glance(s)) for s in sections],
        sections=sections,
        config=[(str(k), _short(json.dumps(v, default=str), 300))
                for k, v in (d.get("config", {}) or {}).items()],
        footer=f"prefaudit {d.get('prefaudit_version', '?')}, audit schema {d.get('schema_version', '?')}, "
               f"data sha256 {str(summary.get('content_sha256', '?'))[:16]}",
    )


#: Agreement metrics the judges section repeats, so the two alphas stand side by side there.
JUDGES_AGREEMENT_METRICS: tuple[str, ...] = (
    "krippendorff_alpha", "krippendorff_alpha_as_presented", "first_position_label_share")


def _add_alphas_to_judges(sections: list[Section], analyzers: Mapping[str, Any]) -> None:
    """Show agreement's orientation-free and as-presented alphas (and its note on why they
    differ, if any) at the top of the judges section."""
    judges = next((s for s in sections if s.name == "judges" and s.ran), None)
    agreement = analyzers.get("agreement") or {}
    metrics = agreement.get("metrics", {}) or {}
    if judges is None or not metrics:
        return
    rows = [_metric_row("agreement", k, metrics[k]) for k in JUDGES_AGREEMENT_METRICS if k in metrics]
    judges.metrics[:0] = [replace(r, name=r.key) for r in rows]  # full name: not a judges.* metric
    judges.notes[:0] = [str(n) for n in agreement.get("notes", []) or [] if "as-presented alpha" in str(n)]


def _as_dict(audit: AuditResult | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(audit, AuditResult):
        # Round-trip through JSON so in-memory and re-rendered reports match exactly.
        from prefaudit.audit import _json_default

        return json.loads(json.dumps(audit.to_dict(), default=_json_default))
    if isinstance(audit, (str, Path)):
        from prefaudit.audit import read_audit

        read_audit(audit)  # validates, with a clear error naming the file
        return json.loads(Path(audit).read_text(encoding="utf-8"))
    return dict(audit)


def _verdict(v: Mapping[str, Any] | None) -> Verdict:
    """The gate's verdict dict (see ``prefaudit.gate.Verdict.to_dict``) as a first-screen badge."""
    if not v:
        return Verdict("NONE", "No policy evaluated: the numbers below were not checked against thresholds "
                               "(run `prefaudit audit --policy FILE` or `prefaudit gate`).", [])
    status = VERDICT_WORDS.get(str(v.get("status", "")).lower(), str(v.get("status", "?")).upper())
    rules = [RuleRow(metric=str(r.get("metric", "")),
                     status=str(r.get("status", "")).upper().replace("_", " "),
                     observed_text=format_number(r.get("observed")),
                     bound_text=(str(r["threshold"]) if r.get("threshold")
                                 else _bound_text(r.get("min"), r.get("max"))),
                     severity=str(r.get("severity", "")), message=str(r.get("message", "")))
             for r in v.get("rules", []) or []]
    order = {"FAIL": 0, "WARN": 1, "NOT MEASURED": 2}
    rules.sort(key=lambda r: order.get(r.status, 3))
    n = {s: sum(r.status == s for r in rules) for s in ("FAIL", "WARN", "PASS", "NOT MEASURED")}
    parts = [f"{n[s]} {word}" for s, word in (("FAIL", "failed"), ("WARN", "warned"), ("PASS", "passed"),
                                                ("NOT MEASURED", "not measured")) if n[s]]
    why = f"{len(rules)} rule(s): " + ", ".join(parts) if rules else "the policy has no rules"
    policy = v.get("policy")
    return Verdict(status, why + (f" (policy {policy})" if policy else ""), rules)


def _bound_text(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"in [{format_number(lo)}, {format_number(hi)}]"
    if lo is not None:
        return f">= {format_number(lo)}"
    if hi is not None:
        return f"<= {format_number(hi)}"
    return "no bound"


SUMMARY_LABELS: tuple[tuple[str, str], ...] = (
    ("n_pairs", "pairs (comparisons)"), ("n_judgements", "judgements (rows)"),
    ("n_annotators", "annotators"), ("multi_annotator", "several judgements per pair"),
    ("n_ties", "ties"), ("n_unique_prompts", "unique prompts"), ("conversational", "conversational"),
)


def _summary_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, _cell(s[k])) for k, label in SUMMARY_LABELS if k in s]
    if s.get("sources"):
        rows.append(("sources", _short(", ".join(map(str, s["sources"])), 400)))
    rows += [(k, _cell(v)) for k, v in s.items() if k not in dict(SUMMARY_LABELS) and k not in ("sources",)]
    return rows


def _load_summary(lr: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [("files", _short(", ".join(map(str, lr.get("sources", []))), 400) or "none recorded"),
            ("formats", ", ".join(dict.fromkeys(map(str, lr.get("formats", [])))) or "none recorded"),
            ("records read", format_number(lr.get("n_records", 0))),
            ("judgements produced", format_number(lr.get("n_rows", 0))),
            ("records or judgements dropped", format_number(lr.get("n_dropped", 0)))]


def _glance(s: Section) -> str:
    if not s.ran:
        return f"not run: {s.not_run_reason}"
    measured = sum(m.value is not None for m in s.metrics)
    return (f"{format_number(s.n_flags)} flag(s) over {len(s.flag_counts)} reason(s); "
            f"{measured} of {len(s.metrics)} metric(s) measured")


def _section(name: str, r: Mapping[str, Any], examples: Mapping[str, Any], n_worst: int,
             max_chars: int) -> Section:
    metrics = [_metric_row(name, k, m) for k, m in (r.get("metrics", {}) or {}).items()]
    figures = [FigureSpec(name, str(k), _title(k), v) for k, v in (r.get("figures", {}) or {}).items()]
    counts = sorted(((str(k), int(v)) for k, v in (r.get("flag_counts", {}) or {}).items()),
                    key=lambda kv: (-kv[1], kv[0]))
    if name == "hygiene" and not figures and counts:
        bars = Bars(labels=[k for k, _ in counts], values={"pairs": [v for _, v in counts]})
        figures = [FigureSpec(name, "flags_by_reason", "Flagged pairs by reason", figure_to_dict(bars))]
    raw_tables = {str(k): v for k, v in (r.get("tables", {}) or {}).items() if isinstance(v, Mapping)}
    side = _side_by_side(raw_tables.pop(SIDE_BY_SIDE_TABLE, None), max_chars)
    tables = [_table(k, v) for k, v in raw_tables.items()]
    return Section(
        name=name, anchor=f"sec-{name}", title=section_title(name), ran=True,
        metrics=metrics, notes=[str(n) for n in r.get("notes", []) or []], figures=figures, tables=tables,
        n_flags=int(r.get("n_flags", len(r.get("top_flags", []) or []))), flag_counts=counts,
        worst_pairs=_worst_pairs(r.get("top_flags", []) or [], examples, n_worst, max_chars),
        params=[(str(k), _short(json.dumps(v, default=str), 200))
                for k, v in (r.get("params", {}) or {}).items()],
        side_by_side=side,
    )


def _side_by_side(split: Mapping[str, Any] | None, max_chars: int) -> list[SideBySide]:
    if not split:
        return []
    cols = list(split.get("columns", []))
    out = []
    for row in split.get("data", []) or []:
        r = dict(zip(cols, row, strict=False))
        out.append(SideBySide(
            _text_block(r.get("prompt"), max_chars), _text_block(r.get("policy_response"), max_chars),
            _text_block(r.get("reference_response"), max_chars),
            f"KL estimate {format_number(r.get('kl_per_token'))} nats/token; "
            f"{format_number(r.get('policy_tokens'))} "
            f"policy vs {format_number(r.get('reference_tokens'))} reference tokens"))
    return out


def _metric_row(analyzer: str, name: str, m: Mapping[str, Any]) -> MetricRow:
    lo, hi = m.get("low"), m.get("high")
    interval = "" if lo is None and hi is None else f"[{format_number(lo)}, {format_number(hi)}]"
    value = m.get("value")
    return MetricRow(key=f"{analyzer}.{name}", name=name, value=value, value_text=format_number(value),
                     interval_text=interval, meaning=str(m.get("meaning", "")))


def _worst_pairs(top_flags: list[Mapping[str, Any]], examples: Mapping[str, Any], n: int,
                 max_chars: int) -> list[WorstPair]:
    by_pair: dict[str, list[FlagRow]] = {}
    for f in top_flags:
        pid = str(f.get("pair_id"))
        if pid not in by_pair and len(by_pair) >= n:
            continue
        by_pair.setdefault(pid, []).append(
            FlagRow(str(f.get("reason", "")), format_number(f.get("score")), str(f.get("detail") or "")))
    out = []
    for pid, flags in by_pair.items():
        ex = examples.get(pid)
        if isinstance(ex, Mapping):
            texts = [_text_block(ex.get(k), max_chars) for k in ("prompt", "chosen", "rejected")]
            out.append(WorstPair(pid, flags, *texts, source=str(ex.get("source", ""))))
        else:
            out.append(WorstPair(pid, flags, None, None, None, source=""))
    return out


def _text_block(text: Any, max_chars: int) -> TextBlock:
    s = "" if text is None else str(text)
    return TextBlock(s[:max_chars], len(s), len(s) > max_chars)


def _table(name: str, split: Mapping[str, Any]) -> TableView:
    columns = [str(c) for c in split.get("columns", [])]
    index = split.get("index", [])
    data = split.get("data", []) or []
    show_index = bool(index) and list(index) != list(range(len(data)))
    rows = [([_cell(index[i])] if show_index else []) + [_cell(v) for v in row]
            for i, row in enumerate(data[:MAX_TABLE_ROWS])]
    return TableView(name, _title(name), ([""] if show_index else []) + columns, rows, len(data))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format_number(v)
    if isinstance(v, (list, dict)):
        return _short(json.dumps(v, default=str), MAX_CELL_CHARS)
    return _short(str(v), MAX_CELL_CHARS)


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _title(key: Any) -> str:
    s = str(key).replace("_", " ").strip()
    return s[:1].upper() + s[1:]
