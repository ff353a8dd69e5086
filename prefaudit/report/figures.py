"""Draw an analyzer's saved figure with matplotlib (Agg) as an SVG data URI.

Analyzers record typed figures (:mod:`prefaudit.figures`: histogram, bars, lines, scatter,
heat map, a few values); the report draws each kind with its own plot from the saved JSON form
alone, so re-rendering a saved audit needs no recomputation, and nothing is guessed from the
data's keys. Figure data that is not a typed figure (an audit saved by an older prefaudit) is
shown as a small key/value table, never as a made-up plot; :class:`~prefaudit.figures.Values`
figures are shown as tables too.

Text taken from the data (cluster labels, annotator names) is drawn literally: math-text
parsing is off and matplotlib escapes it in the SVG, and the SVG is embedded as an ``<img>``
data URI, where a browser never runs scripts.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prefaudit.figures import Bars, Heatmap, Histogram, Lines, Scatter, Values, figure_from_dict  # noqa: E402
from prefaudit.report.model import FigureSpec, format_number  # noqa: E402

#: Scatter plots with more points than this are drawn as an embedded raster inside the SVG.
RASTER_POINTS = 2000
#: Bars shown at most in one bar chart (the largest first when there are more).
MAX_BARS = 40
MAX_LABEL = 40
MAX_PANELS = 12
RC = {"svg.fonttype": "none", "svg.hashsalt": "prefaudit", "text.parse_math": False,
      "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class DrawnFigure:
    """A drawn figure (``uri`` is an SVG data URI) or, for a table of values, its rows.

    ``kind`` is the figure's kind (``histogram``, ``bars``, ``lines``, ``scatter``, ``heatmap``),
    ``values`` for a :class:`~prefaudit.figures.Values` figure, ``table`` for data that is not a
    typed figure, ``missing`` for none.
    """

    title: str
    kind: str
    uri: str = ""
    table: list[tuple[str, str]] = field(default_factory=list)


def draw(spec: FigureSpec) -> DrawnFigure:
    """Draw one figure from its saved (JSON) form."""
    data = spec.data
    if data is None or (isinstance(data, (Mapping, list, str)) and not data):
        return DrawnFigure(spec.title, "missing")
    fig = figure_from_dict(data)
    if fig is None:
        return DrawnFigure(spec.title, "table", table=_fallback_table(data))
    if isinstance(fig, Values):
        return DrawnFigure(spec.title, "values", table=_fallback_table(fig.values))
    if isinstance(fig, Scatter) and not fig.x:
        return DrawnFigure(spec.title, "missing")
    with plt.rc_context(RC):
        drawn = _PLOTS[type(fig)](fig, spec)
        try:
            return DrawnFigure(spec.title, fig.kind, uri=_svg_uri(drawn))
        finally:
            plt.close(drawn)


def _label(x: Any) -> str:
    s = str(x).replace("\n", " ")
    return s if len(s) <= MAX_LABEL else s[: MAX_LABEL - 1] + "…"


def _array(values: list[float | None] | None) -> np.ndarray | None:
    return None if values is None else np.array([np.nan if v is None else v for v in values], dtype=float)


# ---- plots: one per kind of figure ------------------------------------------------------

def _plot_heatmap(h: Heatmap, spec: FigureSpec) -> plt.Figure:
    if len(h.matrices) > 1 or h.names:
        return _plot_matrices(h, spec)
    mat, labels = np.array(_matrix(h.matrices[0])), h.labels
    n = len(labels)
    size = min(2.6 + 0.45 * n, 9.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    finite = mat[np.isfinite(mat)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=lo, vmax=1.0 if not finite.size else
                   max(1.0, float(finite.max())))
    ax.set_xticks(range(n), [_label(x) for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [_label(x) for x in labels])
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if mat[i, j] < (lo + 1) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(spec.title + (f"\n{h.note}" if h.note else ""))
    fig.tight_layout()
    return fig


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _plot_matrices(h: Heatmap, spec: FigureSpec) -> plt.Figure:
    mats = [_matrix(m) for m in h.matrices[:MAX_PANELS]]
    names = (h.names or [str(i) for i in range(len(h.matrices))])[:MAX_PANELS]
    labels = [_label(x) for x in h.labels]
    k = len(mats)
    cols = min(k, 4)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.6, 2.4 * rows + 0.8), squeeze=False)
    for ax, mat, name in zip(axes.flat, mats, names, strict=False):
        ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(_label(name), fontsize=8)
        if len(labels) <= 6:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if np.isfinite(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if mat[i, j] < 0.5 else "black")
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    fig.suptitle(spec.title + (f"\n{h.note}" if h.note else ""), fontsize=9)
    fig.tight_layout()
    return fig


def _plot_points(sc: Scatter, spec: FigureSpec) -> plt.Figure:
    x, y = _array(sc.x), _array(sc.y)
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    raster = len(x) > RASTER_POINTS
    size = 6 if len(x) > 500 else 14
    if sc.groups is None:
        ax.scatter(x, y, s=size, alpha=0.6, rasterized=raster)
    else:
        names = list(dict.fromkeys(sc.groups))
        cmap = plt.get_cmap("tab20")
        arr = np.array(sc.groups, dtype=object)
        for i, g in enumerate(names):
            m = arr == g
            ax.scatter(x[m], y[m], s=size, alpha=0.7, color=cmap(i % 20), rasterized=raster,
                       label=_label(g) if i < 20 else None)
        if len(names) > 1:
            ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.01, 0.5),
                      frameon=False,
                      title=None if len(names) <= 20 else f"first 20 of {len(names)} groups")
    ax.set_xlabel(sc.xlabel)
    ax.set_ylabel(sc.ylabel)
    ax.set_title(f"{spec.title} ({format_number(len(x))} points)")
    fig.tight_layout()
    return fig


def _plot_histogram(h: Histogram, spec: FigureSpec) -> plt.Figure:
    edges = np.array(h.edges)
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    colors = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377")
    one = len(h.counts) == 1
    for i, (name, counts) in enumerate(h.counts.items()):
        ax.stairs(np.nan_to_num(_array(counts)), edges, fill=one, alpha=0.8 if one else 1.0,
                  color=colors[i % len(colors)], linewidth=1.4, label=_label(name))
    for name, at in h.marks.items():
        ax.axvline(at, color="#cc3311", linewidth=1, linestyle="--")
        ax.annotate(_label(name), (at, 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="#cc3311",
                    ha="left", va="top")
    if not one:
        ax.legend(frameon=False)
    ax.set_xlabel(h.xlabel)
    ax.set_ylabel("count")
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


def _plot_line(ln: Lines, spec: FigureSpec) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    colors = ("#4477aa", "#ee6677", "#228833", "#ccbb44")
    x = _array(ln.x)
    for i, (name, y) in enumerate(ln.ys.items()):
        ax.plot(x, _array(y), color=colors[i % 4], linewidth=1.6, label=name.replace("_", " "))
    if ln.low is not None:
        ax.fill_between(x, _array(ln.low), _array(ln.high), color=colors[0], alpha=0.2, linewidth=0)
    ax.set_xlabel(ln.xlabel)
    if len(ln.ys) > 1:
        ax.legend(frameon=False)
    ax.set_ylabel(ln.ylabel or next(iter(ln.ys)).replace("_", " "))
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


def _plot_bars(b: Bars, spec: FigureSpec) -> plt.Figure:
    labels = [_label(x) for x in b.labels]
    series = {k: _array(v) for k, v in b.values.items()}
    low, high, n = _array(b.low), _array(b.high), _array(b.n)
    if len(labels) > MAX_BARS:
        first = next(iter(series.values()))
        keep = np.argsort(-np.nan_to_num(first, nan=-np.inf), kind="stable")[:MAX_BARS]
        labels = [labels[i] for i in keep]
        series = {k: v[keep] for k, v in series.items()}
        low, high = (None, None) if low is None else (low[keep], high[keep])
        n = None if n is None else n[keep]
    horizontal = max((len(s) for s in labels), default=0) > 8 or len(labels) > 12
    height = max(2.4, 0.3 * len(labels) * len(series) + 1.0) if horizontal else 3.6
    fig, ax = plt.subplots(figsize=(7.0, height))
    pos = np.arange(len(labels))
    width = 0.8 / len(series)
    colors = ("#4477aa", "#ee6677", "#228833")
    for i, (name, vals) in enumerate(series.items()):
        err = None
        if low is not None and high is not None:
            err = np.nan_to_num(np.vstack([np.clip(vals - low, 0, None), np.clip(high - vals, 0, None)]))
        at = pos + (i - (len(series) - 1) / 2) * width
        bar = ax.barh if horizontal else ax.bar
        bar(at, np.nan_to_num(vals), width, **{"xerr" if horizontal else "yerr": err},
            color=colors[i % 3], capsize=2, label=name.replace("_", " "))
    if horizontal:
        ax.set_yticks(pos, labels)
        ax.invert_yaxis()
    else:
        many = len(labels) > 5
        ax.set_xticks(pos, labels, rotation=30 if many else 0, ha="right" if many else "center")
    if b.reference is not None:
        (ax.axvline if horizontal else ax.axhline)(b.reference, color="#cc3311", linewidth=1, linestyle="--")
    if n is not None:
        top = np.nanmax(np.vstack(list(series.values())), axis=0)
        for i, c in enumerate(n):
            if math.isfinite(c):
                v = float(np.nan_to_num(top[i]))
                (ax.text(v, i, f"  n={format_number(c)}", va="center", fontsize=7) if horizontal
                 else ax.text(i, v, f"n={format_number(c)}", ha="center", va="bottom", fontsize=7))
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8, loc="lower right" if horizontal else "best")
    else:
        (ax.set_xlabel if horizontal else ax.set_ylabel)(next(iter(series)).replace("_", " "))
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


_PLOTS = {Heatmap: _plot_heatmap, Scatter: _plot_points, Histogram: _plot_histogram, Lines: _plot_line,
          Bars: _plot_bars}


def _svg_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, dpi=110)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fallback_table(data: Any) -> list[tuple[str, str]]:
    items = data.items() if isinstance(data, Mapping) else [("value", data)]
    out = []
    for k, v in list(items)[:20]:
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            text = format_number(v)
        else:
            text = v if isinstance(v, str) else json.dumps(v, default=str)
        out.append((_label(k), text if len(text) <= 200 else text[:199] + "…"))
    return out
