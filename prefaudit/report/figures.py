"""Draw an analyzer's saved figure data with matplotlib (Agg) as an SVG data URI.

Each analyzer stores plain JSON figure data in ``AnalyzerResult.figures``; the report draws
it from that data alone, so re-rendering a saved audit needs no recomputation. The kind of
plot follows the data's shape, not its key name (analyzers name their figures freely):

* a square matrix with labels -> heat map with the values written in the cells
  (agreement's pairwise kappa);
* a stack of square matrices -> small-multiple heat maps (agreement's per-annotator confusion);
* ``x``/``y`` point lists, optionally grouped -> scatter map (coverage's 2-D prompt map);
* ``counts`` with bin ``edges`` or a long list of raw values -> histogram (margins);
* an increasing x series with y series along it -> line plot (length's logistic curve);
* labels with one numeric series, optionally with ``low``/``high`` -> bars with error bars
  (per-annotator reliability, share-chosen-longer by length-difference bin, flags by reason).

A few named numbers that are not counts (bounds, settings) and data of any other shape are
not drawn: :func:`draw` returns a small key/value table of them instead, never a made-up
plot. Text taken from the data (cluster labels, annotator names)
is drawn literally: math-text parsing is off and matplotlib escapes it in the SVG, and the
SVG is embedded as an ``<img>`` data URI, where a browser never runs scripts.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prefaudit.report.model import FigureSpec, format_number  # noqa: E402

#: Scatter plots with more points than this are drawn as an embedded raster inside the SVG.
RASTER_POINTS = 2000
#: Bars shown at most in one bar chart (the largest first when there are more).
MAX_BARS = 40
MAX_LABEL = 40
MAX_PANELS = 12
#: An increasing numeric series this long or longer is read as the x axis of a line plot.
MIN_LINE = 8
RC = {"svg.fonttype": "none", "svg.hashsalt": "prefaudit", "text.parse_math": False,
      "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}
LABEL_KEYS = ("labels", "label", "annotators", "annotator", "names", "bin_labels", "reasons", "reason", "clusters",
              "cluster", "categories")
EXTRA_KEYS = ("low", "high", "edges", "bin_edges")
VALUE_KEYS = ("share", "value", "values", "reliability", "accuracy", "rate", "count", "counts", "mean")
#: A map of named whole numbers is drawn as bars only when its figure name says it holds counts.
COUNT_WORDS = ("count", "reason", "per_", "by_", "n_")
GROUP_KEYS = ("cluster", "clusters", "group", "groups", "label", "labels", "kind", "set", "is_target", "source")


@dataclass(frozen=True)
class DrawnFigure:
    """A drawn figure (``uri`` is an SVG data URI) or, for undrawable data, a fallback table."""

    title: str
    kind: str
    uri: str = ""
    table: list[tuple[str, str]] = field(default_factory=list)


def draw(spec: FigureSpec) -> DrawnFigure:
    """Draw one figure from its saved data, choosing the plot from the data's shape."""
    data = spec.data
    if data is None or (isinstance(data, (Mapping, list, str)) and not data):
        return DrawnFigure(spec.title, "missing")
    for kind, parse, plot in _KINDS:
        parsed = parse(data, spec.name)
        if parsed is not None:
            with plt.rc_context(RC):
                fig = plot(parsed, spec)
                try:
                    return DrawnFigure(spec.title, kind, uri=_svg_uri(fig))
                finally:
                    plt.close(fig)
    kind = "values" if _is_scalar_map(data) else "table"
    return DrawnFigure(spec.title, kind, table=_fallback_table(data))


# ---- parsers: data -> normalised arrays, or None when the shape does not fit -------------

def _numbers(v: Any) -> np.ndarray | None:
    """A 1-D float array when ``v`` is a non-empty list of numbers (None entries -> NaN)."""
    if not isinstance(v, Sequence) or isinstance(v, str) or not v:
        return None
    if not all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v):
        return None
    return np.array([np.nan if x is None else float(x) for x in v], dtype=float)


def _labels(v: Any) -> list[str] | None:
    if not isinstance(v, Sequence) or isinstance(v, str) or not v:
        return None
    if any(isinstance(x, (list, dict)) for x in v):
        return None
    return [_label(x) for x in v]


def _label(x: Any) -> str:
    s = str(x).replace("\n", " ")
    return s if len(s) <= MAX_LABEL else s[: MAX_LABEL - 1] + "…"


def _parse_matrix(data: Any, spec_name: str) -> dict[str, Any] | None:
    if not isinstance(data, Mapping):
        return None
    mat = None
    for v in data.values():
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) >= 2:
            rows = [_numbers(r) for r in v]
            if all(r is not None and len(r) == len(v) for r in rows):
                mat = np.vstack(rows)  # type: ignore[arg-type]
                break
    if mat is None:
        return None
    labels = next((lab for v in data.values() if (lab := _labels(v)) is not None and len(lab) == len(mat)
                   and _numbers(v) is None), [str(i) for i in range(len(mat))])
    return {"matrix": mat, "labels": labels}


def _parse_matrices(data: Any, spec_name: str) -> dict[str, Any] | None:
    """A stack of square matrices (one per annotator, say), with axis labels and panel names."""
    if not isinstance(data, Mapping):
        return None
    for v in data.values():
        if isinstance(v, Sequence) and not isinstance(v, str) and v and all(
                isinstance(m, Sequence) and not isinstance(m, str) for m in v):
            parsed = [_parse_matrix({"m": m}, spec_name) for m in v]
            if all(p is not None for p in parsed) and len({len(p["matrix"]) for p in parsed}) == 1:
                size = len(parsed[0]["matrix"])
                axis = next((lab for k in LABEL_KEYS if (lab := _labels(data.get(k))) and len(lab) == size),
                            [str(i) for i in range(size)])
                names = next((lab for k in LABEL_KEYS if (lab := _labels(data.get(k))) and len(lab) == len(v)),
                             [str(i) for i in range(len(v))])
                note = next((str(data[k]) for k in ("axes", "note") if isinstance(data.get(k), str)), "")
                return {"matrices": [p["matrix"] for p in parsed][:MAX_PANELS], "labels": axis,
                        "names": names[:MAX_PANELS], "note": note}
    return None


def _parse_points(data: Any, spec_name: str) -> dict[str, Any] | None:
    if not isinstance(data, Mapping):
        return None
    x, y = _numbers(data.get("x")), _numbers(data.get("y"))
    if x is None or y is None:
        pts = next((data[k] for k in ("points", "coords", "xy", "embedding_2d") if k in data), None)
        if isinstance(pts, Sequence) and pts and all(isinstance(p, Sequence) and len(p) == 2 for p in pts):
            x, y = _numbers([p[0] for p in pts]), _numbers([p[1] for p in pts])
    if x is None or y is None or len(x) != len(y):
        return None
    groups = next((_labels(data[k]) for k in GROUP_KEYS
                   if k in data and (lab := _labels(data[k])) is not None and len(lab) == len(x)), None)
    names = data.get("group_names") or data.get("cluster_labels")
    if groups is not None and isinstance(names, Mapping):
        groups = [_label(names.get(g, g)) for g in groups]
    return {"x": x, "y": y, "groups": groups}


def _parse_histogram(data: Any, spec_name: str) -> dict[str, Any] | None:
    if isinstance(data, Mapping):
        edges = next((e for k in ("edges", "bin_edges", "bins") if (e := _numbers(data.get(k))) is not None), None)
        if edges is not None and len(edges) >= 2 and np.isfinite(edges).all() and (np.diff(edges) > 0).all():
            series = {str(k): a for k, v in data.items() if k not in ("edges", "bin_edges", "bins", "low", "high")
                      and (a := _numbers(v)) is not None and len(a) == len(edges) - 1}
            counts_only = all(np.isfinite(a).all() and (a >= 0).all() and (a == np.round(a)).all()
                              for a in series.values())
            if series and counts_only:  # fractional series over bins (shares) are bars, not a histogram
                unit = next((data[k] for k in ("unit", "xlabel", "x", "label") if isinstance(data.get(k), str)), "")
                return {"edges": edges, "series": series, "xlabel": str(unit) if unit else ""}
        raw = next((a for k, v in data.items() if k in ("values", "margins", "samples")
                    and (a := _numbers(v)) is not None and len(a) > MAX_BARS), None)
    else:
        raw = _numbers(data)
        raw = raw if raw is not None and len(raw) > MAX_BARS else None
    if raw is None:
        return None
    raw = raw[np.isfinite(raw)]
    if not len(raw):
        return None
    counts, edges = np.histogram(raw, bins=40)
    return {"edges": edges, "series": {"pairs": counts.astype(float)}, "xlabel": ""}


def _parse_line(data: Any, spec_name: str) -> dict[str, Any] | None:
    """An increasing x series of at least ``MIN_LINE`` points and the y series measured along it."""
    if not isinstance(data, Mapping):
        return None
    numeric = {str(k): a for k, v in data.items() if (a := _numbers(v)) is not None}
    if not numeric:
        return None
    x_key, x = next(iter(numeric.items()))
    if x_key in LABEL_KEYS or x_key in GROUP_KEYS or any(_labels(data.get(k)) for k in LABEL_KEYS if k not in numeric):
        return None  # labelled categories (clusters, annotators) are bars, not a curve
    if len(x) < MIN_LINE or not np.isfinite(x).all() or not (np.diff(x) > 0).all():
        return None
    ys = {k: a for k, a in numeric.items() if k != x_key and k not in ("low", "high") and len(a) == len(x)}
    if not ys:
        return None
    low, high = numeric.get("low"), numeric.get("high")
    band = low is not None and high is not None and len(low) == len(high) == len(x)
    return {"x": x, "xlabel": x_key, "ys": dict(list(ys.items())[:4]), "low": low if band else None,
            "high": high if band else None}


def _is_scalar_map(data: Any) -> bool:
    return isinstance(data, Mapping) and bool(data) and all(
        (isinstance(v, (int, float)) and not isinstance(v, bool)) or v is None for v in data.values())


def _parse_bars(data: Any, spec_name: str) -> dict[str, Any] | None:
    if _is_scalar_map(data):
        if len(data) < 2 or not all(isinstance(v, int) and v >= 0 for v in data.values()) or not any(
                w in spec_name for w in COUNT_WORDS):
            return None  # a few named numbers (bounds, settings) read better as a table
        return {"labels": [_label(k) for k in data], "series": {"count": _numbers(list(data.values()))},
                "low": None, "high": None, "n": None}
    if not isinstance(data, Mapping):
        vals = _numbers(data)
        return None if vals is None else {"labels": [str(i) for i in range(len(vals))], "series": {"value": vals},
                                           "low": None, "high": None, "n": None}
    label_key = next((k for k in LABEL_KEYS if _labels(data.get(k)) is not None), None)
    labels = _labels(data[label_key]) if label_key else None
    numeric = {str(k): a for k, v in data.items() if k != label_key and (a := _numbers(v)) is not None}
    size = len(labels) if labels is not None else next(
        (len(a) for k, a in numeric.items() if k not in EXTRA_KEYS), 0)
    n_key = next((k for k in numeric if (k == "n" or k.startswith("n_")) and len(numeric[k]) == size), None)
    names = sorted((k for k, a in numeric.items() if len(a) == size and k not in EXTRA_KEYS and k != n_key
                    and k not in LABEL_KEYS and k not in GROUP_KEYS),
                   key=lambda k: k not in VALUE_KEYS)[:3]
    if not size or not names:
        return None
    edges = next((numeric[k] for k in ("edges", "bin_edges") if k in numeric and len(numeric[k]) == size + 1), None)
    if labels is None and edges is not None:
        labels = [f"{format_number(a)} to {format_number(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    low, high = numeric.get("low"), numeric.get("high")
    ok = len(names) == 1 and low is not None and high is not None and len(low) == len(high) == size
    return {"labels": labels or [str(i) for i in range(size)], "series": {k: numeric[k] for k in names},
            "low": low if ok else None, "high": high if ok else None,
            "n": numeric[n_key] if n_key else None}


# ---- plots ------------------------------------------------------------------------------

def _plot_heatmap(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    mat, labels = p["matrix"], p["labels"]
    n = len(labels)
    size = min(2.6 + 0.45 * n, 9.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    finite = mat[np.isfinite(mat)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=lo, vmax=1.0 if not finite.size else
                   max(1.0, float(finite.max())))
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if mat[i, j] < (lo + 1) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


def _plot_matrices(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    k, labels = len(p["matrices"]), p["labels"]
    cols = min(k, 4)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 0.6, 2.4 * rows + 0.8), squeeze=False)
    for ax, mat, name in zip(axes.flat, p["matrices"], p["names"], strict=False):
        ax.imshow(np.ma.masked_invalid(mat), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(name, fontsize=8)
        if len(labels) <= 6:
            for i in range(len(labels)):
                for j in range(len(labels)):
                    if np.isfinite(mat[i, j]):
                        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if mat[i, j] < 0.5 else "black")
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    fig.suptitle(spec.title + (f"\n{p['note']}" if p["note"] else ""), fontsize=9)
    fig.tight_layout()
    return fig


def _plot_points(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    x, y, groups = p["x"], p["y"], p["groups"]
    fig, ax = plt.subplots(figsize=(7.0, 5.0))
    raster = len(x) > RASTER_POINTS
    size = 6 if len(x) > 500 else 14
    if groups is None:
        ax.scatter(x, y, s=size, alpha=0.6, rasterized=raster)
    else:
        names = list(dict.fromkeys(groups))
        cmap = plt.get_cmap("tab20")
        arr = np.array(groups, dtype=object)
        for i, g in enumerate(names):
            m = arr == g
            ax.scatter(x[m], y[m], s=size, alpha=0.7, color=cmap(i % 20), rasterized=raster,
                       label=g if i < 20 else None)
        if len(names) > 1:
            ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                      title=None if len(names) <= 20 else f"first 20 of {len(names)} groups")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{spec.title} ({format_number(len(x))} points)")
    fig.tight_layout()
    return fig


def _plot_histogram(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    edges, series = p["edges"], p["series"]
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    colors = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377")
    for i, (name, counts) in enumerate(series.items()):
        ax.stairs(np.nan_to_num(counts), edges, fill=len(series) == 1, alpha=0.8 if len(series) == 1 else 1.0,
                  color=colors[i % len(colors)], linewidth=1.4, label=_label(name))
    if edges[0] < 0 < edges[-1]:
        ax.axvline(0.0, color="#cc3311", linewidth=1, linestyle="--")
    if len(series) > 1:
        ax.legend(frameon=False)
    ax.set_xlabel(p["xlabel"])
    ax.set_ylabel("count")
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


def _plot_line(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    colors = ("#4477aa", "#ee6677", "#228833", "#ccbb44")
    for i, (name, y) in enumerate(p["ys"].items()):
        ax.plot(p["x"], y, color=colors[i % 4], linewidth=1.6, label=name.replace("_", " "))
    if p["low"] is not None:
        ax.fill_between(p["x"], p["low"], p["high"], color=colors[0], alpha=0.2, linewidth=0)
    ax.set_xlabel(p["xlabel"].replace("_", " "))
    if len(p["ys"]) > 1:
        ax.legend(frameon=False)
    else:
        ax.set_ylabel(next(iter(p["ys"])).replace("_", " "))
    ax.set_title(spec.title)
    fig.tight_layout()
    return fig


def _plot_bars(p: dict[str, Any], spec: FigureSpec) -> plt.Figure:
    labels, series = list(p["labels"]), dict(p["series"])
    low, high, n = p.get("low"), p.get("high"), p.get("n")
    if len(labels) > MAX_BARS:
        first = next(iter(series.values()))
        keep = np.argsort(-np.nan_to_num(first, nan=-np.inf), kind="stable")[:MAX_BARS]
        labels = [labels[i] for i in keep]
        series = {k: v[keep] for k, v in series.items()}
        low, high = (None, None) if low is None else (low[keep], high[keep])
        n = None if n is None else n[keep]
    horizontal = max((len(s) for s in labels), default=0) > 8 or len(labels) > 12
    fig, ax = plt.subplots(figsize=(7.0, max(2.4, 0.3 * len(labels) * len(series) + 1.0) if horizontal else 3.6))
    pos = np.arange(len(labels))
    width = 0.8 / len(series)
    colors = ("#4477aa", "#ee6677", "#228833")
    for i, (name, vals) in enumerate(series.items()):
        err = None
        if low is not None and high is not None:
            err = np.nan_to_num(np.vstack([np.clip(vals - low, 0, None), np.clip(high - vals, 0, None)]))
        at = pos + (i - (len(series) - 1) / 2) * width
        bar = ax.barh if horizontal else ax.bar
        bar(at, np.nan_to_num(vals), width if not horizontal else width, **{"xerr" if horizontal else "yerr": err},
            color=colors[i % 3], capsize=2, label=name.replace("_", " "))
    if horizontal:
        ax.set_yticks(pos, labels)
        ax.invert_yaxis()
    else:
        ax.set_xticks(pos, labels, rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center")
    values = np.concatenate(list(series.values()))
    finite = values[np.isfinite(values)]
    if spec.analyzer in ("length", "judges") and finite.size and finite.min() >= 0 and finite.max() <= 1:
        (ax.axvline if horizontal else ax.axhline)(0.5, color="#cc3311", linewidth=1, linestyle="--")
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


_KINDS = (
    ("heatmap", _parse_matrix, _plot_heatmap),
    ("heatmaps", _parse_matrices, _plot_matrices),
    ("scatter", _parse_points, _plot_points),
    ("histogram", _parse_histogram, _plot_histogram),
    ("line", _parse_line, _plot_line),
    ("bars", _parse_bars, _plot_bars),
)


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
