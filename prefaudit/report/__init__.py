"""The audit report: one self-contained HTML page and a PDF, both from one ReportModel.

>>> from prefaudit.report import write_reports
>>> paths = write_reports(result, "out/")          # out/report.html, out/report.pdf
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefaudit.audit import AuditResult
from prefaudit.report.html import as_model, draw_figures, html_from_model, render_html
from prefaudit.report.model import ReportModel, build_report_model, format_number
from prefaudit.report.pdf import pdf_from_model, render_pdf

__all__ = ["ReportModel", "build_report_model", "format_number", "render_html", "render_pdf", "write_reports"]


def write_reports(report: ReportModel | AuditResult | Mapping[str, Any] | str | Path, out_dir: str | Path, *,
                  pdf: bool = True) -> dict[str, Path]:
    """Write ``report.html`` (and ``report.pdf`` unless ``pdf=False``) into ``out_dir``.

    The model is built and the figures drawn once; both files show the same numbers.
    Returns the written paths by kind (``"html"``, ``"pdf"``).
    """
    model = as_model(report)
    figures = draw_figures(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html"}
    paths["html"].write_text(html_from_model(model, figures), encoding="utf-8")
    if pdf:
        paths["pdf"] = out / "report.pdf"
        paths["pdf"].write_bytes(pdf_from_model(model, figures))
    return paths
