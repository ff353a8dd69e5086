"""``audit()``: run the analyzers on a canonical table and collect one AuditResult.

The audit runs each requested analyzer in a fixed order and hands per-pair values from
earlier analyzers to later ones through plain keyword arguments (agreement's consensus
support to ``length`` and ``margins``, coverage's prompt clusters to ``length``), so no
analyzer imports another. An analyzer that cannot run (no reference model given, a missing
optional input) is recorded as *not run* with the reason, never silently left out.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit import __version__
from prefaudit.errors import ConfigError
from prefaudit.loaders.report import LoadReport
from prefaudit.results import AnalyzerResult, Metric, concat_flags
from prefaudit.schema import is_conversational, is_multi_annotator, to_pairs, validate

#: Analyzers in the order they run: name -> "module:function".
ANALYZERS: dict[str, str] = {
    "hygiene": "prefaudit.analyzers.hygiene:analyze_hygiene",
    "agreement": "prefaudit.analyzers.agreement:analyze_agreement",
    "coverage": "prefaudit.analyzers.coverage:analyze_coverage",
    "length": "prefaudit.analyzers.length:analyze_length",
    "margins": "prefaudit.analyzers.margins:analyze_margins",
}
#: Analyzers run when none are named; ``margins`` joins them when a reference model is given.
DEFAULT_ANALYZERS: tuple[str, ...] = ("hygiene", "agreement", "coverage", "length")
#: How many of the worst flagged pairs per analyzer keep their full text in the audit JSON.
N_EXAMPLES = 25
SCHEMA_VERSION = 1


@dataclass
class AuditResult:
    """Everything an audit found, and enough text to render a report without recomputing.

    Attributes
    ----------
    summary:
        Counts of the audited table (rows, pairs, annotators, ties, sources, ...).
    load_report:
        What the loader dropped, repaired or coerced.
    results:
        Each analyzer's :class:`AnalyzerResult` by name, in run order.
    not_run:
        Analyzers that were requested or available but did not run, with the reason.
    examples:
        Texts (prompt, chosen, rejected) of the worst flagged pairs, by ``pair_id``.
    config:
        Input path, options and seed the audit ran with.
    verdict:
        The gate's verdict as a dict, once :mod:`prefaudit.gate` has evaluated the audit.
    """

    summary: dict[str, Any]
    load_report: LoadReport
    results: dict[str, AnalyzerResult] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    examples: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, float | None]:
        """Flat map ``{"<analyzer>.<metric>": value}`` over every analyzer that ran."""
        out: dict[str, float | None] = {}
        for res in self.results.values():
            out.update(res.flat_metrics())
        return out

    def pair_flags(self) -> pd.DataFrame:
        """All flags: ``pair_id, analyzer, reason, score, detail``."""
        frames = []
        for name, res in self.results.items():
            f = res.pair_flags.copy()
            f.insert(1, "analyzer", name)
            frames.append(f)
        if not frames:
            return pd.DataFrame(columns=["pair_id", "analyzer", "reason", "score", "detail"])
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``audit.json``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "prefaudit_version": __version__,
            "config": self.config,
            "summary": self.summary,
            "load_report": self.load_report.to_dict(),
            "metrics": self.metrics,
            "analyzers": {name: _result_to_dict(res) for name, res in self.results.items()},
            "not_run": self.not_run,
            "examples": self.examples,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditResult:
        """Rebuild an AuditResult from its JSON form (pair flags are the saved worst ones)."""
        results = {name: _result_from_dict(name, r) for name, r in d.get("analyzers", {}).items()}
        return cls(summary=d.get("summary", {}), load_report=LoadReport.from_dict(d.get("load_report", {})),
                   results=results, not_run=dict(d.get("not_run", {})),
                   examples=dict(d.get("examples", {})), config=dict(d.get("config", {})),
                   verdict=d.get("verdict"))

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``audit.json`` and ``pair_flags.csv`` into ``out_dir``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"audit": out / "audit.json", "pair_flags": out / "pair_flags.csv"}
        paths["audit"].write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n",
                                  encoding="utf-8")
        self.pair_flags().to_csv(paths["pair_flags"], index=False)
        return paths


def read_audit(path: str | Path) -> AuditResult:
    """Load a saved ``audit.json``."""
    from prefaudit.errors import DataFormatError

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError("no such file", path=str(p)) from None
    except OSError as exc:
        raise DataFormatError(f"cannot read audit file ({exc.strerror or exc})", path=str(p)) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON ({exc.msg})", path=str(p), line=exc.lineno) from None
    if not isinstance(d, dict) or "metrics" not in d:
        raise DataFormatError("not a prefaudit audit.json (no 'metrics' key)", path=str(p))
    return AuditResult.from_dict(d)


def summarize_table(table: pd.DataFrame) -> dict[str, Any]:
    """Counts a reader needs first: judgements, pairs, annotators, ties, prompts, sources."""
    ann = table["annotator"].dropna()
    return {
        "n_judgements": int(len(table)),
        "n_pairs": int(table["pair_id"].nunique()),
        "n_annotators": int(ann.nunique()),
        "multi_annotator": is_multi_annotator(table),
        "n_ties": int(table["tie"].sum()),
        "n_unique_prompts": int(table["prompt"].nunique()),
        "conversational": is_conversational(table),
        "sources": sorted(map(str, table["source"].unique()))[:50],
        "content_sha256": table_hash(table),
    }


_TEXT_COLUMNS = frozenset({"pair_id", "prompt", "chosen", "rejected"})


def table_hash(table: pd.DataFrame) -> str:
    """SHA-256 of the table's judgements (stable across runs; names the audited data)."""
    h = hashlib.sha256()
    cols = ["pair_id", "prompt", "chosen", "rejected", "annotator", "tie", "strength"]
    # the text columns are str already: hashed as they are, without a copy into Arrow strings
    text = [table[c].to_numpy(dtype=object) if c in _TEXT_COLUMNS
            else table[c].astype("string").fillna("<NA>").to_numpy(dtype=object) for c in cols]
    for values in zip(*text, strict=True):
        h.update("\x1f".join(values).encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()


def analyzer_function(name: str) -> Any:
    """The analyzer function registered under ``name``."""
    if name not in ANALYZERS:
        raise ConfigError(f"unknown analyzer {name!r}; known: {', '.join(ANALYZERS)}")
    module, func = ANALYZERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def audit(table: pd.DataFrame, analyzers: list[str] | tuple[str, ...] | None = None, *,
          load_report: LoadReport | None = None, seed: int = 0,
          options: dict[str, dict[str, Any]] | None = None,
          config: dict[str, Any] | None = None, engine: Any = None) -> AuditResult:
    """Run analyzers on a canonical table.

    Parameters
    ----------
    table:
        A canonical pair table (see :mod:`prefaudit.schema`), e.g. from :func:`prefaudit.load`.
    analyzers:
        Names to run, in any order (they run in :data:`ANALYZERS` order). None runs
        :data:`DEFAULT_ANALYZERS`, plus ``margins`` when ``options["margins"]`` names a
        ``reference_model``.
    load_report:
        The loader's report, carried into the result.
    seed:
        Passed to every analyzer that uses randomness.
    options:
        Per-analyzer keyword arguments, e.g. ``{"length": {"tokenizer": "path"}}``.
    engine:
        Where the model passes of ``coverage`` and ``margins`` run: None / ``"local"``, or
        ``"ray"`` / a :class:`prefaudit.scoring.engines.Engine`. The metrics do not depend on it.
    """
    table = validate(table)
    options = {k: dict(v) for k, v in (options or {}).items()}
    unknown = set(options) - set(ANALYZERS)
    if unknown:
        raise ConfigError(f"options given for unknown analyzer(s) {sorted(unknown)}")
    wanted = _resolve(analyzers, options)
    result = AuditResult(summary=summarize_table(table), load_report=load_report or LoadReport(),
                         config={"seed": seed, "analyzers": list(wanted), **(config or {}),
                                 "options": _jsonable(options)})
    if "margins" not in wanted:
        result.not_run["margins"] = "no reference model given (--reference-model)"
    for name in ANALYZERS:
        if name not in wanted:
            result.not_run.setdefault(name, "not requested")
            continue
        kwargs = {**options.get(name, {}), **_handoffs(name, result.results)}
        func = analyzer_function(name)
        if "seed" in inspect.signature(func).parameters:
            kwargs.setdefault("seed", seed)
        if engine is not None and "engine" in inspect.signature(func).parameters:
            kwargs.setdefault("engine", engine)
        result.results[name] = func(table, **kwargs)
    result.examples = _examples(table, result)
    return result


def _resolve(analyzers: list[str] | tuple[str, ...] | None, options: dict[str, dict[str, Any]]) -> list[str]:
    if analyzers is None:
        wanted = list(DEFAULT_ANALYZERS)
        if options.get("margins", {}).get("reference_model"):
            wanted.append("margins")
    else:
        wanted = list(analyzers)
    for name in wanted:
        if name not in ANALYZERS:
            raise ConfigError(f"unknown analyzer {name!r}; known: {', '.join(ANALYZERS)}")
    return [n for n in ANALYZERS if n in wanted]


def _handoffs(name: str, done: dict[str, AnalyzerResult]) -> dict[str, Any]:
    """Per-pair values earlier analyzers produced that ``name`` accepts."""
    def column(analyzer: str, col: str) -> pd.Series | None:
        res = done.get(analyzer)
        if res is None or res.pair_data is None or col not in res.pair_data.columns:
            return None
        return res.pair_data[col]

    kwargs: dict[str, Any] = {}
    # length thresholds support like a vote share; margins only correlates with it, so it gets
    # the finer Dawid-Skene posterior (which is near 1 even for a 2-vs-1 split)
    support = column("agreement", "majority_share" if name == "length" else "consensus_posterior")
    clusters = column("coverage", "cluster")
    if name in ("length", "margins") and support is not None:
        kwargs["support"] = support
    if name == "length" and clusters is not None:
        kwargs["clusters"] = clusters
    return kwargs


def _examples(table: pd.DataFrame, result: AuditResult) -> dict[str, dict[str, str]]:
    ids: list[str] = []
    for res in result.results.values():
        flags = concat_flags([res.pair_flags])
        worst = flags.sort_values("score", ascending=False, kind="mergesort")
        ids += list(dict.fromkeys(worst["pair_id"].astype(str)))[:N_EXAMPLES]
    first = to_pairs(table).set_index("pair_id")  # the final (majority) orientation
    out = {}
    for pid in dict.fromkeys(ids):
        if pid in first.index:
            r = first.loc[pid]
            out[pid] = {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                        "source": r["source"]}
    return out


def _result_to_dict(res: AnalyzerResult) -> dict[str, Any]:
    worst = res.pair_flags.sort_values("score", ascending=False, kind="mergesort")
    return {
        "metrics": {k: m.to_dict() for k, m in res.metrics.items()},
        "notes": list(res.notes),
        "n_flags": int(len(res.pair_flags)),
        "flag_counts": {str(k): int(v) for k, v in res.pair_flags["reason"].value_counts().sort_index().items()},
        "top_flags": _jsonable(worst.head(N_EXAMPLES * 4).to_dict("records")),
        "figures": _jsonable(res.figures),
        "tables": {k: _jsonable(v.to_dict("split")) for k, v in res.tables.items()},
        "params": _jsonable(res.params),
    }


def _result_from_dict(name: str, d: dict[str, Any]) -> AnalyzerResult:
    res = AnalyzerResult(analyzer=name, notes=list(d.get("notes", [])), figures=d.get("figures", {}),
                         params=d.get("params", {}))
    for k, m in d.get("metrics", {}).items():
        res.metrics[k] = Metric(k, m.get("value"), m.get("meaning", ""), m.get("low"), m.get("high"))
    flags = pd.DataFrame(d.get("top_flags", []), columns=["pair_id", "reason", "score", "detail"])
    res.pair_flags = flags
    res.tables = {k: pd.DataFrame(v["data"], index=v["index"], columns=v["columns"])
                  for k, v in d.get("tables", {}).items()}
    return res


def _jsonable(obj: Any) -> Any:
    """Convert numpy/pandas values inside ``obj`` to plain JSON types (NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (pd.Series, pd.Index)):
        return _jsonable(obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return _jsonable(obj.to_dict("split"))
    return _json_default(obj) if not isinstance(obj, (str, int, bool, type(None))) else obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
