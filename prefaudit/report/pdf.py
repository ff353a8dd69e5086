"""Render a report model as a paginated PDF with WeasyPrint, from the same HTML.

The PDF is the HTML page laid out for print (A4, each analyzer section on a new page, page
numbers, every collapsible text block open); figures stay vector graphics (SVG). WeasyPrint
needs the system Pango library (``libpango-1.0-0``; on Debian/Ubuntu ``apt-get install
libpango-1.0-0 libpangoft2-1.0-0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefaudit.audit import AuditResult
from prefaudit.errors import ConfigError
from prefaudit.report.html import Figures, as_model, draw_figures, html_from_model
from prefaudit.report.model import ReportModel


def render_pdf(report: ReportModel | AuditResult | Mapping[str, Any] | str | Path) -> bytes:
    """The report as PDF bytes."""
    model = as_model(report)
    return pdf_from_model(model, draw_figures(model))


def pdf_from_model(model: ReportModel, figures: Figures) -> bytes:
    """Lay out the print version of the page; raises ConfigError when WeasyPrint cannot load."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the system Pango library is missing
        raise ConfigError(f"PDF needs WeasyPrint and the system Pango library ({exc}); "
                          "install them or pass --no-pdf") from None
    html = html_from_model(model, figures, print_mode=True)
    return weasyprint.HTML(string=html, base_url=None).write_pdf()
