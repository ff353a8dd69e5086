"""Streaming record readers for JSONL, JSON, CSV and parquet files (gzip too).

Each reader yields ``(line, record_no, record)``: the 1-based line number for line-based
files (None otherwise), the 1-based record number, and the record as a dict. Malformed input
raises :class:`~prefaudit.errors.DataFormatError` naming the file and line/record.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from prefaudit.errors import DataFormatError, UnknownFormatError

Record = tuple[int | None, int, dict[str, Any]]
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".ndjson")


def file_kind(path: Path) -> str:
    """``"jsonl"``, ``"json"``, ``"csv"`` or ``"parquet"`` from the name (``.gz`` stripped)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                         (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    raise UnknownFormatError(
        f"{path}: cannot tell the file type from its name; expected one of "
        ".jsonl, .json, .csv, .parquet (optionally .gz)")


def is_data_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(DATA_SUFFIXES)


def _open_text(path: Path) -> TextIO:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict")
    return open(path, encoding="utf-8", errors="strict", newline="")


def iter_records(path: Path) -> Iterator[Record]:
    """Yield the records of ``path`` one at a time."""
    kind = file_kind(path)
    try:
        if kind == "jsonl":
            yield from _iter_jsonl(path)
        elif kind == "json":
            yield from _iter_json(path)
        elif kind == "csv":
            yield from _iter_csv(path)
        else:
            yield from _iter_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"file is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                              path=str(path)) from None
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"cannot read file: {exc}", path=str(path)) from None


def _iter_jsonl(path: Path) -> Iterator[Record]:
    record_no = 0
    loads = json.loads
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.isspace():  # blank line (no stripped copy of the record)
                continue
            try:
                rec = loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"invalid JSON ({exc.msg} at column {exc.colno})",
                                      path=str(path), line=line_no) from None
            record_no += 1
            if not isinstance(rec, dict):
                raise DataFormatError(f"expected a JSON object, got {type(rec).__name__}",
                                      path=str(path), line=line_no)
            yield line_no, record_no, rec


def _iter_json(path: Path) -> Iterator[Record]:
    with _open_text(path) as fh:
        text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON ({exc.msg} at column {exc.colno})",
                              path=str(path), line=exc.lineno) from None
    if isinstance(data, dict):
        # a single object holding the list under a conventional key ("data", "train", ...)
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataFormatError("expected a JSON list of records (or an object holding one list)",
                                  path=str(path))
        data = lists[0]
    if not isinstance(data, list):
        raise DataFormatError(f"expected a JSON list of records, got {type(data).__name__}",
                              path=str(path))
    del text
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise DataFormatError(f"expected a JSON object, got {type(rec).__name__}",
                                  path=str(path), record=i)
        yield None, i, rec


def _iter_csv(path: Path) -> Iterator[Record]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        for i, row in enumerate(reader, start=1):
            if None in row:
                raise DataFormatError(
                    f"row has {len(reader.fieldnames) + len(row[None])} fields, header has "
                    f"{len(reader.fieldnames)}", path=str(path), line=reader.line_num)
            yield reader.line_num, i, {k: _csv_value(k, v) for k, v in row.items()}


#: CSV columns whose cells may hold JSON (message lists, completion lists, ``{from, value}``).
STRUCTURED_COLUMNS = frozenset({
    "prompt", "chosen", "rejected", "messages", "conversations", "completions",
    "conversation_a", "conversation_b", *(f"{c}_messages" for c in ("prompt", "chosen", "rejected")),
})


def _csv_value(column: str, v: str | None) -> Any:
    """CSV cells are text. A cell of a structured column holding JSON messages (a
    ``{"role", "content"}`` / ``{"from", "value"}`` object or a list of them) or a list of
    completions (objects with ``response``) is parsed; anything else, such as a response that
    is itself JSON, stays text."""
    if v and v[0] in "[{" and column in STRUCTURED_COLUMNS:
        try:
            parsed = json.loads(v)
        except json.JSONDecodeError:
            return v
        items = parsed if isinstance(parsed, list) else [parsed]
        if items and all(isinstance(x, dict) and _is_structured(x.keys()) for x in items):
            return parsed
    return v


def _is_structured(keys: Any) -> bool:
    return {"role", "content"} <= keys or {"from", "value"} <= keys or "response" in keys


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataFormatError(f"not a readable parquet file ({exc})", path=str(path)) from None
    i = 0
    for batch in pf.iter_batches(batch_size=8192):
        for rec in batch.to_pylist():
            i += 1
            yield None, i, rec
