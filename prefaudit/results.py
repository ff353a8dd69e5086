"""The result type every analyzer returns.

An analyzer is a plain function ``analyze_x(table, **params) -> AnalyzerResult``. The result
holds named metrics (each declared in the analyzer's module with a one-line meaning, see
:mod:`prefaudit.metrics`, and, where declared, an interval),
per-pair flags (which pairs look wrong, why, and how strongly), the data its figures need,
small tables for the report, plain-language notes (e.g. "agreement needs two labels per
pair"), and optional per-pair values that the audit may hand to later analyzers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prefaudit.figures import Figure, figure_to_dict
from prefaudit.metrics import declaration

FLAG_COLUMNS: tuple[str, ...] = ("pair_id", "reason", "score", "detail")


@dataclass(frozen=True)
class Metric:
    """One named number.

    ``value`` is None when the metric could not be measured on this data (the reason is in
    the analyzer's notes). ``low``/``high`` bound its interval when it has one; the flat
    metrics map of an audit then also carries the two ends under their declared names
    (:class:`~prefaudit.metrics.MetricSpec`).
    """

    name: str
    value: float | None
    meaning: str
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": _clean(self.value), "meaning": self.meaning,
                "low": _clean(self.low), "high": _clean(self.high)}


@dataclass
class AnalyzerResult:
    """What one analyzer found.

    Attributes
    ----------
    analyzer:
        The analyzer's name, the prefix of its metrics (``"hygiene"``, ``"length"``, ...).
    metrics:
        Metrics by name (without the analyzer prefix).
    pair_flags:
        One row per (pair, reason): columns ``pair_id``, ``reason`` (a short code), ``score``
        (larger = worse, comparable within a reason), ``detail`` (human-readable why).
    figures:
        The report's figures by name, each the JSON form of a typed figure
        (:mod:`prefaudit.figures`; recorded with :meth:`add_figure`).
    tables:
        Small DataFrames for the report (per-annotator reliability, cluster table, ...).
    notes:
        Plain statements a reader must see (what could not be computed and why).
    pair_data:
        Optional per-pair values indexed by ``pair_id`` that later analyzers may use
        (e.g. agreement's consensus posterior, coverage's prompt cluster).
    params:
        The parameters the analyzer ran with (for reproducibility).
    """

    analyzer: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    pair_flags: pd.DataFrame = field(default_factory=lambda: empty_flags())
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pair_data: pd.DataFrame | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def add_metric(self, name: str, value: float | None, *, low: float | None = None,
                   high: float | None = None) -> None:
        """Record a declared metric, its meaning taken from the declaration.

        NaN values are stored as None (not measured). Raises
        :class:`~prefaudit.metrics.UndeclaredMetricError` for a name the analyzer's module does
        not declare, and ``ValueError`` for interval ends on a metric declared without one.
        """
        spec = declaration(self.analyzer)[name]
        if not spec.interval and (low is not None or high is not None):
            raise ValueError(f"{self.analyzer}.{name}: declared without an interval, but low/high were given")
        self.metrics[name] = Metric(name, _clean(value), spec.meaning, _clean(low), _clean(high))

    def add_figure(self, name: str, figure: Figure) -> None:
        """Record a figure (a :mod:`prefaudit.figures` dataclass) under ``name``, in its JSON form."""
        self.figures[name] = figure_to_dict(figure)

    def flat_metrics(self) -> dict[str, float | None]:
        """``{"<analyzer>.<metric>": value}``, with the declared ``low``/``high`` keys for intervals."""
        out: dict[str, float | None] = {}
        decl = declaration(self.analyzer)
        for name, m in self.metrics.items():
            out[f"{self.analyzer}.{name}"] = m.value
            spec = decl[name]
            if m.low is not None or m.high is not None:
                out[f"{self.analyzer}.{spec.low}"] = m.low
                out[f"{self.analyzer}.{spec.high}"] = m.high
        return out


def empty_flags() -> pd.DataFrame:
    """An empty pair-flags frame with the standard columns."""
    return pd.DataFrame({"pair_id": pd.Series([], dtype=object), "reason": pd.Series([], dtype=object),
                         "score": pd.Series([], dtype="float64"), "detail": pd.Series([], dtype=object)})


def make_flags(pair_ids: Any, reason: str | Any, score: Any = 1.0, detail: Any = "") -> pd.DataFrame:
    """Build a pair-flags frame; scalars broadcast over ``pair_ids``."""
    ids = list(pair_ids)
    n = len(ids)
    if n == 0:
        return empty_flags()

    def col(v: Any) -> list[Any]:
        return list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series, pd.Index)) else [v] * n

    return pd.DataFrame({"pair_id": ids, "reason": col(reason),
                         "score": np.asarray(col(score), dtype="float64"), "detail": col(detail)})


def concat_flags(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate flag frames, sorted by reason then descending score (stable)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_flags()
    out = pd.concat(frames, ignore_index=True)[list(FLAG_COLUMNS)]
    out = out.sort_values(["reason", "score"], ascending=[True, False], kind="mergesort")
    return out.reset_index(drop=True)


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None
