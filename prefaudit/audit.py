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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit import __version__
from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.loaders.report import LoadReport
from prefaudit.results import FLAG_COLUMNS, AnalyzerResult, Metric, concat_flags
from prefaudit.schema import (
    first_judgements,
    has_order,
    is_conversational,
    is_multi_annotator,
    to_pairs,
    validate,
)

#: Analyzers in the order they run: name -> "module:function".
ANALYZERS: dict[str, str] = {
    "hygiene": "prefaudit.analyzers.hygiene:analyze_hygiene",
    "agreement": "prefaudit.analyzers.agreement:analyze_agreement",
    "judges": "prefaudit.analyzers.judges:analyze_judges",
    "coverage": "prefaudit.analyzers.coverage:analyze_coverage",
    "length": "prefaudit.analyzers.length:analyze_length",
    "margins": "prefaudit.analyzers.margins:analyze_margins",
}
#: Analyzers run when none are named; ``margins`` joins them when a reference model is given,
#: ``judges`` runs only when the data names annotators or records the presentation order.
DEFAULT_ANALYZERS: tuple[str, ...] = ("hygiene", "agreement", "judges", "coverage", "length")
#: Analyzers given an annotator's repeated judgements of a comparison (``repeat`` rows):
#: ``judges`` uses them, ``agreement`` leaves them out and says so; every other analyzer gets
#: each annotator's first judgement only (schema.first_judgements).
READS_REPEATS: frozenset[str] = frozenset({"agreement", "judges"})
#: Runs whatever analyzers are named: it is cheap, and the default policy requires its metrics.
ALWAYS_RUN = "hygiene"
AUDIT_FILE, FLAGS_FILE = "audit.json", "pair_flags.csv"
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
    flags_complete:
        False for an audit read back without its ``pair_flags.csv``: each analyzer's
        ``pair_flags`` then holds only the worst flags saved in ``audit.json``.
    """

    summary: dict[str, Any]
    load_report: LoadReport
    results: dict[str, AnalyzerResult] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)
    examples: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    flags_complete: bool = True

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
        results = {name: _result_from_dict(name, r) for name, r in (d.get("analyzers") or {}).items()}
        return cls(summary=d.get("summary") or {},
                   load_report=LoadReport.from_dict(d.get("load_report") or {}),
                   results=results, not_run=dict(d.get("not_run") or {}),
                   examples=dict(d.get("examples") or {}), config=dict(d.get("config") or {}),
                   verdict=d.get("verdict"))

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Same as :func:`save_audit`."""
        return save_audit(self, out_dir)


def save_audit(result: AuditResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``audit.json`` and ``pair_flags.csv`` (every flag) into ``out_dir``; return their
    paths. :func:`read_audit` reads both back into an equal AuditResult."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"audit": out / AUDIT_FILE, "pair_flags": out / FLAGS_FILE}
    paths["audit"].write_text(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n",
                              encoding="utf-8")
    result.pair_flags().to_csv(paths["pair_flags"], index=False)
    return paths


def read_audit(path: str | Path) -> AuditResult:
    """Load an audit saved by :func:`save_audit`: ``path`` is its ``audit.json`` or folder.

    Every flag comes back from the ``pair_flags.csv`` beside it (its counts per analyzer must
    match ``audit.json``). Without that file the result holds only the worst flags saved in
    ``audit.json`` and ``flags_complete`` is False. A malformed file is a
    :class:`~prefaudit.errors.DataFormatError` naming the file and field.
    """
    p = Path(path)
    p = p / AUDIT_FILE if p.is_dir() else p
    try:
        d = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataFormatError("no such file", path=str(p)) from None
    except OSError as exc:
        raise DataFormatError(f"cannot read audit file ({exc.strerror or exc})", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"file is not valid UTF-8 ({exc.reason})", path=str(p)) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON ({exc.msg})", path=str(p), line=exc.lineno) from None
    except (RecursionError, ValueError):
        raise DataFormatError("invalid JSON (nested too deeply or an over-long number)",
                              path=str(p)) from None
    _check_audit_dict(d, p)
    try:
        result = AuditResult.from_dict(d)
    # a shape the checks above miss (table cells, flag records)
    except (TypeError, ValueError, LookupError, AttributeError, pd.errors.InvalidIndexError) as exc:
        raise DataFormatError(f"not a readable prefaudit audit ({type(exc).__name__}: {exc})",
                              path=str(p)) from None
    flags_path = p.with_name(FLAGS_FILE)
    if flags_path.is_file():
        _attach_flags(result, d, flags_path)
    else:
        result.flags_complete = not any(int(r.get("n_flags", 0)) for r in d.get("analyzers", {}).values())
    return result


def _check_audit_dict(d: Any, p: Path) -> None:
    """The shape of a saved audit, as far as gate, report and training read it; the first
    mismatch is a DataFormatError naming its field (``analyzers.hygiene.metrics``)."""
    if not isinstance(d, dict) or "metrics" not in d:
        raise DataFormatError("not a prefaudit audit.json (no 'metrics' key)", path=str(p))

    def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise DataFormatError(f"expected {what}, got {type(value).__name__} ({value!r:.40})",
                                  path=str(p), field=where)
        return value

    def number(value: Any, where: str) -> None:
        if value is not None and not math.isfinite(expect(value, (int, float), where, "a number or null")):
            raise DataFormatError(f"expected a finite number or null, got {value!r}", path=str(p),
                                  field=where)

    def mapping(key: str, where: str, within: dict[str, Any]) -> dict[str, Any]:
        value = within.get(key)
        return {} if value is None else expect(value, dict, where, "a map")

    def listing(key: str, where: str, within: dict[str, Any]) -> list[Any]:
        value = within.get(key)
        return [] if value is None else expect(value, list, where, "a list")

    def records(key: str, where: str, within: dict[str, Any]) -> list[dict[str, Any]]:
        items = listing(key, where, within)
        return [expect(x, dict, f"{where}[{i}]", "a map") for i, x in enumerate(items)]

    for key, value in expect(d["metrics"], dict, "metrics", "a map of metric name to number").items():
        number(value, f"metrics.{key}")
    for key in ("summary", "load_report", "analyzers", "not_run", "examples", "config", "verdict"):
        mapping(key, key, d)
    listing("sources", "summary.sources", d.get("summary") or {})
    for key in ("n_records", "n_rows", "n_dropped"):
        expect((d.get("load_report") or {}).get(key, 0), int, f"load_report.{key}", "an integer")
    for key in ("sources", "formats"):
        listing(key, f"load_report.{key}", d.get("load_report") or {})
    for i, e in enumerate(records("events", "load_report.events", d.get("load_report") or {})):
        listing("first_records", f"load_report.events[{i}].first_records", e)
        for key in ("reason", "action", "description"):
            expect(e.get(key, ""), str, f"load_report.events[{i}].{key}", "text")
        expect(e.get("count", 0), int, f"load_report.events[{i}].count", "an integer")
    for i, rule in enumerate(records("rules", "verdict.rules", d.get("verdict") or {})):
        for key in ("observed", "min", "max"):
            number(rule.get(key), f"verdict.rules[{i}].{key}")
    for pid, example in (d.get("examples") or {}).items():
        expect(example, dict, f"examples.{pid}", "a map")
    for name, r in (d.get("analyzers") or {}).items():
        at = f"analyzers.{name}"
        expect(r, dict, at, "a map")
        for key, m in mapping("metrics", f"{at}.metrics", r).items():
            expect(m, dict, f"{at}.metrics.{key}", "a map")
            for part in ("value", "low", "high"):
                number(m.get(part), f"{at}.metrics.{key}.{part}")
        for key in ("figures", "params", "tables"):
            mapping(key, f"{at}.{key}", r)
        for key, t in (r.get("tables") or {}).items():
            for part in ("data", "index", "columns"):
                expect(expect(t, dict, f"{at}.tables.{key}", "a map").get(part), list,
                       f"{at}.tables.{key}.{part}", "a list")
        for key, n in mapping("flag_counts", f"{at}.flag_counts", r).items():
            expect(n, int, f"{at}.flag_counts.{key}", "an integer")
        expect(r.get("n_flags", 0), int, f"{at}.n_flags", "an integer")
        listing("notes", f"{at}.notes", r)
        for i, flag in enumerate(records("top_flags", f"{at}.top_flags", r)):
            number(flag.get("score"), f"{at}.top_flags[{i}].score")


def _attach_flags(result: AuditResult, d: dict[str, Any], path: Path) -> None:
    """Every saved flag of each analyzer from ``pair_flags.csv``, checked against ``audit.json``."""
    try:
        flags = pd.read_csv(path, dtype={"pair_id": str, "analyzer": str, "reason": str, "detail": str},
                            keep_default_na=False, na_values={"score": [""]})
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read the saved flags ({exc})", path=str(path)) from None
    missing = [c for c in ("analyzer", *FLAG_COLUMNS) if c not in flags.columns]
    if missing:
        raise DataFormatError(f"missing column(s) {missing}", path=str(path))
    by_analyzer = dict(tuple(flags.groupby("analyzer", sort=False)))
    extra = sorted(set(by_analyzer) - set(result.results))
    if extra:
        raise DataFormatError(f"flags of analyzer {extra[0]!r}, which {AUDIT_FILE} does not hold",
                              path=str(path), field="analyzer")
    for name, res in result.results.items():
        mine = by_analyzer.get(name, flags.iloc[:0])
        expected = int(d["analyzers"][name].get("n_flags", len(mine)))
        if len(mine) != expected:
            raise DataFormatError(f"{len(mine)} flags of analyzer {name!r}, but {AUDIT_FILE} counts "
                                  f"{expected}: the two files are not from the same audit", path=str(path))
        res.pair_flags = mine[list(FLAG_COLUMNS)].reset_index(drop=True)


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
#: Rows per block of :func:`table_hash`: the non-text fields are written as text a block at a
#: time, not for the whole table at once.
HASH_BLOCK = 32_768


def table_hash(table: pd.DataFrame) -> str:
    """SHA-256 of the table's judgements (stable across runs; names the audited data): row
    after row, the fields joined by ``\x1f`` and a ``\x1e`` (UTF-8, lone surrogates kept)."""
    h = hashlib.sha256()
    cols = ["pair_id", "prompt", "chosen", "rejected", "annotator", "tie", "strength"]
    for start in range(0, len(table), HASH_BLOCK):
        block = table.iloc[start:start + HASH_BLOCK]
        # the text columns are str already: hashed as they are, without a copy into Arrow strings
        text = [block[c].to_numpy(dtype=object) if c in _TEXT_COLUMNS
                else block[c].astype("string").fillna("<NA>").to_numpy(dtype=object) for c in cols]
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


def audit(table: pd.DataFrame | Any, analyzers: list[str] | tuple[str, ...] | None = None, *,
          load_report: LoadReport | None = None, seed: int = 0,
          options: dict[str, dict[str, Any]] | None = None,
          config: dict[str, Any] | None = None, split: str | None = None, engine: Any = None) -> AuditResult:
    """Run analyzers on a canonical table.

    Parameters
    ----------
    table:
        A canonical pair table (see :mod:`prefaudit.schema`), e.g. from :func:`prefaudit.load`,
        or a Hugging Face ``Dataset`` / ``DatasetDict`` / ``IterableDataset`` in a format
        :func:`prefaudit.load` detects (loaded first; its LoadReport is carried).
    analyzers:
        Names to run, in any order (they run in :data:`ANALYZERS` order); :data:`ALWAYS_RUN`
        (hygiene) runs too. None runs :data:`DEFAULT_ANALYZERS`, plus ``margins`` when
        ``options["margins"]`` names a ``reference_model``.
    load_report:
        The loader's report, carried into the result.
    seed:
        Passed to every analyzer that uses randomness.
    options:
        Per-analyzer keyword arguments, e.g. ``{"length": {"tokenizer": "path"}}``.
    split:
        The split of a ``DatasetDict`` given as ``table``.
    engine:
        Where the model passes of ``coverage`` and ``margins`` run: None / ``"local"``, or
        ``"ray"`` / a :class:`prefaudit.scoring.engines.Engine`. The metrics do not depend on it.
    """
    if not isinstance(table, pd.DataFrame):
        from prefaudit.loaders import load

        table, report = load(table, split=split)
        load_report = load_report or report
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
    if (analyzers is None and "judges" in wanted
            and not (table["annotator"].notna().any() or has_order(table))):
        wanted.remove("judges")
        result.config["analyzers"] = list(wanted)
        result.not_run["judges"] = ("the data names no annotator and does not record which "
                                    "response was shown first")
    firsts = first_judgements(table)
    pairs = None  # the majority collapse, shared by consecutive analyzers that read it
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
        if name not in READS_REPEATS and "pairs" in inspect.signature(func).parameters:
            pairs = to_pairs(firsts) if pairs is None else pairs
            kwargs["pairs"] = pairs
        else:  # not held through an analyzer that does not read it: its memory peak comes first
            pairs = None
        result.results[name] = func(table if name in READS_REPEATS else firsts, **kwargs)
    result.examples = _examples(to_pairs(firsts) if pairs is None else pairs, result)
    return result


def _resolve(analyzers: list[str] | tuple[str, ...] | None, options: dict[str, dict[str, Any]]) -> list[str]:
    if analyzers is None:
        wanted = list(DEFAULT_ANALYZERS)
        if options.get("margins", {}).get("reference_model"):
            wanted.append("margins")
    else:
        wanted = [ALWAYS_RUN, *analyzers]
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


def _examples(pairs: pd.DataFrame, result: AuditResult) -> dict[str, dict[str, str]]:
    """Prompt and texts of the worst-flagged pairs of each analyzer, in ``pairs``' final
    (majority) orientation."""
    ids: list[str] = []
    for res in result.results.values():
        flags = concat_flags([res.pair_flags])
        worst = flags.sort_values("score", ascending=False, kind="mergesort")
        ids += list(dict.fromkeys(worst["pair_id"].astype(str)))[:N_EXAMPLES]
    first = pairs[pairs["pair_id"].isin(ids)].set_index("pair_id")
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
        "flag_counts": {str(k): int(v)
                        for k, v in res.pair_flags["reason"].value_counts().sort_index().items()},
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
