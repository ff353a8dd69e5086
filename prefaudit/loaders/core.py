"""``load()``: any supported file(s), DataFrame or Hugging Face dataset -> canonical pair table +
LoadReport."""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Iterable, Iterator
from itertools import chain, repeat
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from prefaudit.errors import DataFormatError, UnknownFormatError
from prefaudit.loaders import column_map, hf
from prefaudit.loaders.common import Context
from prefaudit.loaders.io import CSV_DEFAULT_FIELD_LIMIT, Record, find_data_files, iter_records
from prefaudit.loaders.report import LoadReport
from prefaudit.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, empty_table, normalize_dtypes, validate
from prefaudit.text import text_codes

#: Format modules in sniffing order: the one whose ``sniff`` accepts most of a file's first
#: records wins, the earlier on a tie (see :func:`detect_format`).
FORMAT_NAMES: tuple[str, ...] = (
    "trl_standard", "llama_factory", "hh_rlhf", "ultrafeedback", "shp", "pandalm",
    "alpacafarm", "mt_bench", "llmbar", "generic_long",
)
SNIFF_RECORDS = 5
#: Rows buffered before they are moved into the columns (see :func:`_collect`); below the
#: garbage collector's first threshold (700 new objects), so buffering starts no collections,
#: which would walk the growing columns again and again.
COLLECT_BATCH = 256


class Loaded(NamedTuple):
    """What :func:`load` returns: the canonical table and what loading did."""

    table: pd.DataFrame
    report: LoadReport


def format_module(name: str) -> ModuleType:
    """The module implementing format ``name``."""
    if name == column_map.NAME:
        return column_map
    if name not in FORMAT_NAMES:
        raise UnknownFormatError(f"unknown format {name!r}; known formats: {', '.join(FORMAT_NAMES)}")
    return importlib.import_module(f"prefaudit.loaders.formats.{name}")


def detect_format(records: list[dict[str, Any]], where: str) -> str:
    """Name of the format whose ``sniff`` accepts the most of the first records (the earliest
    in :data:`FORMAT_NAMES` on a tie), so one broken record among them (a missing field) still
    gets the format's precise error naming that record and field."""
    if not records:
        raise UnknownFormatError(f"{where}: no records to detect the format from")
    head = records[:SNIFF_RECORDS]
    best, best_n = None, 0
    for name in FORMAT_NAMES:
        sniff = format_module(name).sniff
        n = sum(1 for r in head if sniff(r))
        if n > best_n:
            best, best_n = name, n
    if best is not None:
        return best
    keys = ", ".join(map(str, list(records[0])[:12]))
    raise UnknownFormatError(
        f"{where}: cannot detect the format of the first record (fields: {keys}); "
        f"pass format= one of {', '.join(FORMAT_NAMES)}")


def load(data: str | Path | pd.DataFrame | Iterable[str | Path] | Any, format: str = "auto",
         *, source: str | None = None, columns: str | dict[str, str] | None = None,
         label_values: str | dict[Any, str] | None = None, split: str | None = None,
         **options: Any) -> Loaded:
    """Load preference data into the canonical pair table.

    Parameters
    ----------
    data:
        A file (.jsonl, .json, .csv, .parquet, each optionally .gz), a directory (every data
        file below it, in sorted order), a list of files, or a DataFrame (either already
        canonical, or one record per row in any supported format). Also Hugging Face
        datasets: a ``Dataset``, ``DatasetDict`` (pick ``split``) or ``IterableDataset``
        (read in batches), a ``save_to_disk`` folder, an ``.arrow`` file, or
        ``"hf:ORG/NAME[:CONFIG]"`` from the local datasets cache (:mod:`prefaudit.loaders.hf`).
    format:
        ``"auto"`` to detect from the first records of each file, or a name in
        :data:`FORMAT_NAMES`.
    source:
        Name stored in the ``source`` column (default: parent folder and file name).
    columns, label_values:
        A column map for any other schema (:mod:`prefaudit.loaders.column_map`), e.g.
        ``columns="prompt=question,chosen=good,rejected=bad"``, or
        ``columns={"prompt": "prompt", "response_a": "response 1", "response_b": "response 2",
        "label": "label"}, label_values={0: "a", 1: "b", 2: "tie"}``.
    split:
        The split of a DatasetDict (needed when it holds several).
    **options:
        Format options, e.g. ``pairs="all"`` for UltraFeedback, ``responses=PATH`` for the
        generic long table.

    Returns
    -------
    Loaded
        ``(table, report)``. Nothing is dropped or altered without being counted in ``report``.
    """
    if columns is not None or label_values is not None:
        if format not in ("auto", column_map.NAME):
            raise UnknownFormatError(f"columns= is a format of its own; it cannot be combined with "
                                     f"format={format!r}")
        format = column_map.NAME
        options = {**options, **column_map.options(columns or {}, label_values)}
    elif format == column_map.NAME:
        raise UnknownFormatError("format 'column_map' needs columns= (--columns), e.g. "
                                 "prompt=question,chosen=good,rejected=bad")
    if hf.is_dataset(data) or hf.is_dataset_path(data):
        return _load_dataset(data, format, source, split, options)
    if split is not None:
        raise UnknownFormatError("split= applies to Hugging Face datasets (a DatasetDict, a save_to_disk "
                                 "folder or an hf: id), not to files or DataFrames")
    if isinstance(data, pd.DataFrame):
        return _load_frame(data, format, source or "<DataFrame>", options)
    report, frames = LoadReport(), []
    paths = _expand(data, report)
    for path in paths:
        table, rep = _load_file(path, format, source, options)
        frames.append(table)
        report.merge(rep)
    _check_not_empty(report, paths)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    _check_unique_across_files(frames, paths)
    return Loaded(table, report)


def _check_not_empty(report: LoadReport, paths: list[Path] | list[str]) -> None:
    """Nothing to audit is bad input, not an audit of 0 pairs."""
    if report.n_rows:
        return
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more file(s)"
    if not report.n_records:
        raise DataFormatError("no records; expected at least one preference record", path=where)
    raise DataFormatError(f"no judgements: all {report.n_records} record(s) were dropped ("
                          + "; ".join(f"{e.reason}: {e.count}" for e in report.events.values()
                                      if e.action == "dropped") + ")", path=where)


def _expand(data: str | Path | Iterable[str | Path], report: LoadReport) -> list[Path]:
    items = [data] if isinstance(data, (str, Path)) else list(data)
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            skipped = report.n_dropped
            found = find_data_files(p, report)
            if not found:
                why = (f" ({report.n_dropped - skipped} folder(s) or link(s) could not be read: "
                       + ", ".join(f"{e.reason} {', '.join(map(str, e.first_records))}"
                                   for e in report.events.values()) + ")"
                       if report.n_dropped > skipped else "")
                raise UnknownFormatError(f"{p}: directory holds no .jsonl/.json/.csv/.parquet files{why}")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise DataFormatError("no such file or directory", path=str(p))
    if not paths:
        raise UnknownFormatError("no input files given")
    return paths


def _source_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _load_file(path: Path, format: str, source: str | None, options: dict[str, Any]) -> Loaded:
    long_cells: list[int] = []
    records = iter_records(path, long_cells)
    head = _take(records, SNIFF_RECORDS)
    name = detect_format([r for _, _, r in head], str(path)) if format == "auto" else format
    loaded = _convert(name, _chain(head, records), str(path), source or _source_name(path), options)
    for record in long_cells:
        loaded.report.note("long_csv_cell", record, "kept", "a CSV cell longer than the csv module's "
                           f"default limit of {CSV_DEFAULT_FIELD_LIMIT} characters; read whole")
    return loaded


def _load_frame(frame: pd.DataFrame, format: str, source: str, options: dict[str, Any]) -> Loaded:
    if format == "auto" and set(REQUIRED_COLUMNS) <= set(frame.columns):
        table = validate(frame)
        report = LoadReport([source], ["canonical"], len(table), len(table))
        _check_unique_in_file(table, None, source)
        return Loaded(table, report)
    recs = ((None, i, {k: _unbox(v) for k, v in r.items()})
            for i, r in enumerate(frame.to_dict("records"), start=1))
    head = _take(recs, SNIFF_RECORDS)
    name = detect_format([r for _, _, r in head], source) if format == "auto" else format
    loaded = _convert(name, _chain(head, recs), source, source, options)
    _check_not_empty(loaded.report, [source])
    return loaded


def _load_dataset(data: Any, format: str, source: str | None, split: str | None,
                  options: dict[str, Any]) -> Loaded:
    where = str(data) if isinstance(data, (str, Path)) else f"<{type(data).__name__}>"
    obj = hf.open_path(data) if isinstance(data, (str, Path)) else data
    ds, where = hf.select_split(obj, split, where)
    records = hf.iter_records(ds)
    head = _take(records, SNIFF_RECORDS)
    name = detect_format([r for _, _, r in head], where) if format == "auto" else format
    loaded = _convert(name, _chain(head, records), where, source or where, options)
    _check_not_empty(loaded.report, [where])  # _convert checked the ids
    return loaded


def _unbox(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_unbox(x) for x in v.tolist()]
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is pd.NA:
        return None
    return v


def _take(it: Iterator[Record], n: int) -> list[Record]:
    out = []
    for rec in it:
        out.append(rec)
        if len(out) == n:
            break
    return out


def _chain(head: list[Record], rest: Iterator[Record]) -> Iterator[Record]:
    yield from head
    yield from rest


def _convert(name: str, records: Iterator[Record], path: str, source: str,
             options: dict[str, Any]) -> Loaded:
    mod = format_module(name)
    report = LoadReport([path], [name])
    ctx = Context(path=path, source=source, report=report, options=options)
    prepare = getattr(mod, "prepare", None)
    if prepare is not None:
        prepare(ctx)
    columns, where = _collect(_rows(mod, records, ctx), ctx)
    ctx.state.clear()  # the format's working state (e.g. the judgements seen) is done with
    n_rows = len(where.records)
    report.n_rows = n_rows
    if not n_rows:
        return Loaded(empty_table(), report)
    ordered = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in columns]
    # one column at a time, each list freed once it is an array (object dtype: pandas 3 would
    # otherwise copy every text into Arrow and back); copy=False: no 2-D block of them all
    arrays = {c: np.fromiter(columns.pop(c), dtype=object, count=n_rows)
              for c in ordered + [c for c in columns if c not in ordered]}
    _share_repeated_texts(arrays)
    table = normalize_dtypes(pd.DataFrame(arrays, dtype=object, copy=False))
    del arrays  # normalize_dtypes copied them: not kept through the checks below
    _check_unique_in_file(table, where, path)
    return Loaded(table, report)


def _share_repeated_texts(arrays: dict[str, np.ndarray]) -> None:
    """Point the later rows of a comparison judged several times at its first row's id and text
    objects, where they are equal.

    Each record's texts are parsed into str objects of their own, so a pair judged by three
    annotators would hold its id, prompt and responses three times. Equal values only are
    shared (chosen and rejected may be swapped between judgements, so each is compared with
    both of the first row's responses): the table's values do not change, the copies are freed.
    """
    codes = text_codes(arrays["pair_id"])
    first = np.unique(codes, return_index=True)[1][codes]  # per row, the first row of its pair
    later = np.flatnonzero(first != np.arange(len(codes)))
    if not len(later):
        return
    src = first[later]
    for col, refs in (("pair_id", ("pair_id",)), ("prompt", ("prompt",)),
                      ("chosen", ("chosen", "rejected")), ("rejected", ("rejected", "chosen"))):
        values = arrays[col]
        for ref_col in refs:
            ref = arrays[ref_col][src]
            same = values[later] == ref  # element-wise str equality
            values[later[same]] = ref[same]


class RowOrigins(NamedTuple):
    """Where each table row came from, for error messages: its 1-based line (0: the format
    has no lines) and record number, 16 bytes a row."""

    lines: array[int]
    records: array[int]

    def at(self, i: int) -> tuple[int | None, int]:
        """``(line or None, record)`` of row ``i``."""
        return self.lines[i] or None, self.records[i]


def _collect(rows: Iterator[dict[str, Any]], ctx: Context) -> tuple[dict[str, list[Any]], RowOrigins]:
    """The rows as columns (a list per key in order of first appearance, None where a row
    lacks the key) and their origins.

    Column-wise accumulation: no list of all row dicts is kept. Rows are buffered
    :data:`COLLECT_BATCH` at a time and each column is extended from the batch by a C-level
    ``map(dict.get, ...)``, not by a Python loop over cells.
    """
    columns: dict[str, list[Any]] = {}
    origins = RowOrigins(array("q"), array("q"))
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        n_before = len(origins.records) - len(batch)
        for key in dict.fromkeys(chain.from_iterable(batch)):
            if key not in columns:
                columns[key] = [None] * n_before
        for key, values in columns.items():
            values += map(dict.get, batch, repeat(key))
        batch.clear()

    for r in rows:
        origins.lines.append(ctx.line or 0)
        origins.records.append(ctx.record)
        batch.append(r)
        if len(batch) == COLLECT_BATCH:
            flush()
    if batch:
        flush()
    return columns, origins


def _rows(mod: ModuleType, records: Iterator[Record], ctx: Context) -> Iterator[dict[str, Any]]:
    """Rows of every record, then any rows the module emits at the end (``finish``)."""
    convert = mod.convert
    n_records = 0
    for line, rec_no, rec in records:
        ctx.line, ctx.record = line, rec_no
        n_records += 1
        yield from convert(rec, ctx)
    ctx.report.n_records += n_records
    finish = getattr(mod, "finish", None)
    if finish is not None:
        yield from finish(ctx)


def _check_unique_in_file(table: pd.DataFrame, where: RowOrigins | None, path: str) -> None:
    """Two rows of one file with the same (pair_id, annotator) would double-count a judgement:
    the error names the repeat by its line/record in the file (``where``, per row; None: the
    row number is the record), and the first occurrence."""
    dup = table.duplicated(["pair_id", "annotator"]).to_numpy()
    if "repeat" in table.columns:  # a loader's marked repeat judgement is not a clash
        dup = dup & ~table["repeat"].to_numpy(dtype=bool)
    if not dup.any():
        return
    i = int(np.flatnonzero(dup)[0])
    annotator = table["annotator"].fillna("\x00")
    same = (table["pair_id"] == table["pair_id"].iloc[i]) & (annotator == annotator.iloc[i])
    j = int(np.flatnonzero(same.to_numpy())[0])
    (first_line, first_record), (line, record) = (
        ((None, j + 1), (None, i + 1)) if where is None else (where.at(j), where.at(i)))
    first = f"line {first_line}" if first_line is not None else f"record {first_record}"
    raise DataFormatError(
        f"pair_id {table['pair_id'].iloc[i]!r} appears twice for the same annotator (first at {first}); "
        "pair ids must be unique per annotator (rename, or load the files separately)",
        path=path, line=line, record=record, field="pair_id")


def _check_unique_across_files(frames: list[pd.DataFrame], paths: list[Path]) -> None:
    """The same (pair_id, annotator) in two files: the error names both files."""
    if len(frames) < 2:
        return
    keys = pd.concat([f[["pair_id", "annotator"]] for f in frames], ignore_index=True)
    dup = keys.duplicated().to_numpy()
    if not dup.any():
        return
    i = int(np.flatnonzero(dup)[0])
    file_of = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    annotator = keys["annotator"].fillna("\x00")
    same = (keys["pair_id"] == keys["pair_id"].iloc[i]) & (annotator == annotator.iloc[i])
    first = paths[int(file_of[int(np.flatnonzero(same.to_numpy())[0])])]
    raise DataFormatError(
        f"pair_id {keys['pair_id'].iloc[i]!r} also appears in {first} for the same annotator; "
        "pair ids must be unique per annotator (rename, or load the files separately)",
        path=str(paths[int(file_of[i])]), field="pair_id")
