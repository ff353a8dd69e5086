"""Metric declarations: every metric an analyzer reports is declared once, in its own module.

Each analyzer module starts with one block, the way cleanlab's issue managers declare theirs::

    METRICS = declare(
        "length", "Length bias",
        MetricSpec("share_longer_chosen", "share of non-tied pairs whose chosen response ...",
                   low="share_longer_chosen_low", high="share_longer_chosen_high"),
        ...
    )

:meth:`prefaudit.results.AnalyzerResult.add_metric` takes a metric's meaning from its
declaration and refuses a name that is not declared. The gate's known metric names
(:func:`prefaudit.gate.known_metric_names`), the report's section titles and README's metric
table (``scripts/metrics_table.py``) are derived from these declarations. The keys of an
interval's two ends are spelled out in the declaration (``low=`` / ``high=``), so every key of
an ``audit.json`` metrics map is a literal in the package source.

A meaning is static text: the values of the parameters an analyzer ran with are in its
result's ``params``. This module imports nothing heavy, so the gate stays light; the analyzer
modules are imported only when every declaration is asked for.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UndeclaredMetricError(LookupError):
    """An analyzer recorded a metric its module does not declare (a programming error)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (without the analyzer prefix), what the number means, and, for a
    metric with an interval, the names of its two ends in the flat metrics map (``low`` must be
    ``<name>_low`` and ``high`` ``<name>_high``, written out so that grep finds them)."""

    name: str
    meaning: str
    low: str | None = None
    high: str | None = None

    @property
    def interval(self) -> bool:
        """Whether the metric carries an interval."""
        return self.low is not None


@dataclass(frozen=True)
class AnalyzerMetrics:
    """The declared metrics of one analyzer, in declaration order, and its report title."""

    analyzer: str
    title: str
    specs: Mapping[str, MetricSpec]

    def __getitem__(self, name: str) -> MetricSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UndeclaredMetricError(
                f"{self.analyzer}: metric '{name}' is not declared; add MetricSpec('{name}', '<meaning>') "
                f"to the METRICS declaration of the {self.analyzer} analyzer module") from None

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self.specs.values())

    def __len__(self) -> int:
        return len(self.specs)

    def flat_names(self) -> tuple[str, ...]:
        """``<analyzer>.<metric>`` for every metric, then the interval ends of those that have one."""
        names = [f"{self.analyzer}.{s.name}" for s in self]
        ends = [f"{self.analyzer}.{end}" for s in self if s.interval for end in (s.low, s.high)]
        return tuple(names + ends)


_REGISTRY: dict[str, AnalyzerMetrics] = {}
#: Modules outside ``prefaudit.audit.ANALYZERS`` that declare metrics a policy may name, by metric
#: prefix (e.g. post-training checks writing ``posttrain.*``).
OTHER_DECLARING_MODULES: dict[str, str] = {"posttrain": "prefaudit.posttrain.metrics"}


def declare(analyzer: str, title: str, *specs: MetricSpec) -> AnalyzerMetrics:
    """Declare the metrics of ``analyzer`` (call once, at the top of its module).

    ``title`` heads the analyzer's section in the report. Raises ``ValueError`` for a bad or
    repeated name, an empty or multi-line meaning, interval ends not named ``<name>_low`` and
    ``<name>_high`` (or only one of them), or a second, different declaration of the same
    analyzer.
    """
    if not _NAME.match(analyzer):
        raise ValueError(f"analyzer name {analyzer!r} must be lower-case letters, digits and '_'")
    by_name: dict[str, MetricSpec] = {}
    for s in specs:
        where = f"{analyzer}.{s.name}"
        if not _NAME.match(s.name):
            raise ValueError(f"{where}: a metric name must be lower-case letters, digits and '_'")
        if s.name in by_name:
            raise ValueError(f"{where}: declared twice")
        if not s.meaning.strip() or "\n" in s.meaning:
            raise ValueError(f"{where}: the meaning must be one non-empty line")
        if (s.low, s.high) != ((s.name + "_low", s.name + "_high") if s.interval else (None, None)):
            raise ValueError(f"{where}: an interval's ends must be named low='{s.name}_low', "
                             f"high='{s.name}_high', got low={s.low!r}, high={s.high!r}")
        by_name[s.name] = s
    for s in specs:
        for end in (s.low, s.high) if s.interval else ():
            if end in by_name:
                raise ValueError(f"{analyzer}.{end}: clashes with an end of {s.name}'s interval")
    decl = AnalyzerMetrics(analyzer, title, MappingProxyType(by_name))
    if analyzer in _REGISTRY and _REGISTRY[analyzer] != decl:
        raise ValueError(f"{analyzer}: metrics declared twice, differently")
    _REGISTRY[analyzer] = decl
    return decl


def declaration(analyzer: str) -> AnalyzerMetrics:
    """The declared metrics of one analyzer (importing its module if it is a known analyzer)."""
    if analyzer not in _REGISTRY:
        module = _analyzer_modules().get(analyzer)
        if module is not None:
            importlib.import_module(module)
    try:
        return _REGISTRY[analyzer]
    except KeyError:
        raise UndeclaredMetricError(f"analyzer '{analyzer}' declares no metrics "
                                    f"(no declare('{analyzer}', ...) has run)") from None


def all_declarations() -> dict[str, AnalyzerMetrics]:
    """Every declared metric set, analyzers first in the audit's run order (imports their modules)."""
    return {name: declaration(name) for name in _analyzer_modules()}


def _analyzer_modules() -> dict[str, str]:
    """Every module that declares metrics, by metric prefix: the audit's analyzers, then
    :data:`OTHER_DECLARING_MODULES`."""
    from prefaudit.audit import ANALYZERS

    return {**{name: target.split(":")[0] for name, target in ANALYZERS.items()}, **OTHER_DECLARING_MODULES}


def markdown_table() -> str:
    """Every declared metric as a Markdown table (README's metric table): name, interval, meaning."""
    rows = ["| metric | interval | meaning |", "| --- | --- | --- |"]
    for decl in all_declarations().values():
        for s in decl:
            meaning = s.meaning.replace("|", "\\|")
            ends = "`_low`/`_high`" if s.interval else ""
            rows.append(f"| `{decl.analyzer}.{s.name}` | {ends} | {meaning} |")
    return "\n".join(rows) + "\n"
