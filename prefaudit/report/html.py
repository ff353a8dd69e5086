"""Render a report model as one self-contained HTML page (Jinja2, autoescaped).

Every string from the dataset is escaped by the template engine; CSS is inline, figures are
SVG data URIs, and a Content-Security-Policy forbids scripts and any network request, so
the file reads the same offline, attached to an e-mail or opened from a CI artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from prefaudit.audit import AuditResult
from prefaudit.report.figures import DrawnFigure, draw
from prefaudit.report.model import ReportModel, build_report_model, format_number

Figures = dict[str, list[DrawnFigure]]

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def as_model(report: ReportModel | AuditResult | Mapping[str, Any] | str | Path) -> ReportModel:
    """A :class:`ReportModel`, building one from an audit (object, dict or audit.json path)."""
    return report if isinstance(report, ReportModel) else build_report_model(report)


def draw_figures(model: ReportModel) -> Figures:
    """Draw every section's figures once (both renderings embed the same drawings)."""
    return {s.name: [draw(f) for f in s.figures] for s in model.sections}


def render_html(report: ReportModel | AuditResult | Mapping[str, Any] | str | Path) -> str:
    """The report as a self-contained HTML page (prompts and responses in collapsible blocks)."""
    model = as_model(report)
    return html_from_model(model, draw_figures(model))


def html_from_model(model: ReportModel, figures: Figures, *, print_mode: bool = False) -> str:
    """Fill the template; ``print_mode`` opens every collapsible block (for the PDF)."""
    return _ENV.get_template("report.html.j2").render(m=model, figs=figures, fmt=format_number,
                                                      print_mode=print_mode)
