"""Typed figure data: one small dataclass per kind of figure, filled by analyzers, drawn by the report.

An analyzer records a figure with ``result.add_figure(name, Histogram(...))``. The result keeps
the figure's JSON form (:func:`figure_to_dict`: the fields plus a ``"kind"`` tag), so a figure
read back from a saved ``audit.json`` (:func:`figure_from_dict`) is the one the analyzer made,
and the report draws each kind with its own plot instead of guessing it from the data's keys.

Numbers are stored as plain floats; NaN and infinity become None (drawn as gaps).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


def _floats(values: Any, what: str) -> list[float | None]:
    """A list of plain floats (None for missing, NaN or infinite) from a list or array of numbers."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what}: expected a list of numbers, got {type(values).__name__}")
    out: list[float | None] = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise ValueError(f"{what}: expected numbers, got {v!r}")
        f = None if v is None else float(v)
        out.append(f if f is not None and math.isfinite(f) else None)
    return out


def _series(series: Mapping[str, Sequence[Any]], size: int, what: str) -> dict[str, list[float | None]]:
    if not isinstance(series, Mapping) or not series:
        raise ValueError(f"{what}: expected at least one named series")
    out = {str(k): _floats(v, f"{what}[{k!r}]") for k, v in series.items()}
    bad = [k for k, v in out.items() if len(v) != size]
    if bad:
        raise ValueError(f"{what}: series {bad} do not have {size} values")
    return out


def _same_length(values: Sequence[Any] | None, size: int, what: str) -> list[float | None] | None:
    if values is None:
        return None
    out = _floats(values, what)
    if len(out) != size:
        raise ValueError(f"{what}: expected {size} values, got {len(out)}")
    return out


def _set(obj: Any, **values: Any) -> None:
    for k, v in values.items():
        object.__setattr__(obj, k, v)


@dataclass(frozen=True)
class Histogram:
    """Counts over bins: ``edges`` holds n + 1 increasing bin edges, each series of ``counts`` n
    counts (several series share the bins, e.g. chosen and rejected); ``marks`` are named x
    positions drawn as vertical lines (e.g. ``{"max_length": 512}``)."""

    edges: list[float]
    counts: dict[str, list[float | None]]
    xlabel: str = ""
    marks: dict[str, float] = field(default_factory=dict)
    kind: ClassVar[str] = "histogram"

    def __post_init__(self) -> None:
        edges = _floats(self.edges, "Histogram.edges")
        if len(edges) < 2 or None in edges or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):  # type: ignore[operator]
            raise ValueError("Histogram.edges: expected two or more finite, increasing bin edges")
        _set(self, edges=edges, counts=_series(self.counts, len(edges) - 1, "Histogram.counts"),
             marks={str(k): float(v) for k, v in self.marks.items()})


@dataclass(frozen=True)
class Bars:
    """One bar per label for one to three named series of ``values``; with a single series,
    ``low``/``high`` give each bar an interval; ``n`` is written on each bar; ``reference`` is a
    value drawn as a line across (e.g. 0.5 for a share that should be even)."""

    labels: list[str]
    values: dict[str, list[float | None]]
    low: list[float | None] | None = None
    high: list[float | None] | None = None
    n: list[float | None] | None = None
    reference: float | None = None
    kind: ClassVar[str] = "bars"

    def __post_init__(self) -> None:
        labels = [str(x) for x in self.labels]
        values = _series(self.values, len(labels), "Bars.values")
        if len(values) > 3:
            raise ValueError("Bars.values: at most three series")
        if (self.low is None) != (self.high is None) or (self.low is not None and len(values) != 1):
            raise ValueError("Bars: low and high go together, and only with a single series")
        _set(self, labels=labels, values=values, low=_same_length(self.low, len(labels), "Bars.low"),
             high=_same_length(self.high, len(labels), "Bars.high"),
             n=_same_length(self.n, len(labels), "Bars.n"),
             reference=None if self.reference is None else float(self.reference))


@dataclass(frozen=True)
class Lines:
    """Curves over a shared increasing ``x``: up to four named ``ys`` series; ``low``/``high`` a
    band around the first."""

    x: list[float]
    ys: dict[str, list[float | None]]
    xlabel: str = ""
    ylabel: str = ""
    low: list[float | None] | None = None
    high: list[float | None] | None = None
    kind: ClassVar[str] = "lines"

    def __post_init__(self) -> None:
        x = _floats(self.x, "Lines.x")
        if len(x) < 2 or None in x or any(b <= a for a, b in zip(x[:-1], x[1:], strict=True)):  # type: ignore[operator]
            raise ValueError("Lines.x: expected two or more finite, increasing values")
        ys = _series(self.ys, len(x), "Lines.ys")
        if len(ys) > 4 or (self.low is None) != (self.high is None):
            raise ValueError("Lines: at most four series; low and high go together")
        _set(self, x=x, ys=ys, low=_same_length(self.low, len(x), "Lines.low"),
             high=_same_length(self.high, len(x), "Lines.high"))


@dataclass(frozen=True)
class Scatter:
    """Points ``(x, y)``, optionally in named ``groups`` (one name per point, coloured apart)."""

    x: list[float]
    y: list[float]
    groups: list[str] | None = None
    xlabel: str = ""
    ylabel: str = ""
    kind: ClassVar[str] = "scatter"

    def __post_init__(self) -> None:
        x, y = _floats(self.x, "Scatter.x"), _floats(self.y, "Scatter.y")
        if len(x) != len(y) or (self.groups is not None and len(self.groups) != len(x)):
            raise ValueError("Scatter: x, y and groups need one entry per point")
        _set(self, x=x, y=y, groups=None if self.groups is None else [str(g) for g in self.groups])


@dataclass(frozen=True)
class Heatmap:
    """One or more square matrices over the same row/column ``labels``, one panel each, named by
    ``names`` (pairwise kappa: one matrix; per-annotator confusion: one per annotator)."""

    labels: list[str]
    matrices: list[list[list[float | None]]]
    names: list[str] = field(default_factory=list)
    note: str = ""
    kind: ClassVar[str] = "heatmap"

    def __post_init__(self) -> None:
        labels = [str(x) for x in self.labels]
        size = len(labels)
        mats = [[_floats(row, "Heatmap.matrices") for row in m] for m in self.matrices]
        if not mats or any(len(m) != size or any(len(r) != size for r in m) for m in mats):
            raise ValueError(f"Heatmap.matrices: expected {size} x {size} matrices, one per label")
        names = [str(x) for x in self.names]
        if names and len(names) != len(mats):
            raise ValueError("Heatmap.names: one name per matrix")
        _set(self, labels=labels, matrices=mats, names=names)


@dataclass(frozen=True)
class Values:
    """A few named numbers (bounds, quantiles): the report shows them as a small table."""

    values: dict[str, float | None]
    kind: ClassVar[str] = "values"

    def __post_init__(self) -> None:
        _set(self, values=dict(zip(map(str, self.values), _floats(list(self.values.values()), "Values"),
                                   strict=True)))


Figure = Histogram | Bars | Lines | Scatter | Heatmap | Values
#: Figure classes by their ``kind`` tag.
KINDS: dict[str, type] = {cls.kind: cls for cls in (Histogram, Bars, Lines, Scatter, Heatmap, Values)}


def figure_to_dict(fig: Figure) -> dict[str, Any]:
    """The JSON form of a figure: its fields and its ``kind``."""
    if type(fig) not in KINDS.values():
        raise TypeError(f"a figure must be one of {', '.join(c.__name__ for c in KINDS.values())}, "
                        f"got {type(fig).__name__}")
    return {"kind": fig.kind, **asdict(fig)}


def figure_from_dict(data: Any) -> Figure | None:
    """The figure a :func:`figure_to_dict` form describes; None for anything else (data saved by
    an older prefaudit, or damaged)."""
    if not isinstance(data, Mapping) or data.get("kind") not in KINDS:
        return None
    cls = KINDS[data["kind"]]
    try:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
    except (TypeError, ValueError):
        return None
