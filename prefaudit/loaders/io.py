"""Streaming record readers for JSONL, JSON, CSV and parquet files (gzip too), and the folder walk.

Each reader yields ``(line, record_no, record)``: the 1-based line number for line-based
files (None otherwise), the 1-based record number, and the record as a dict. Malformed input
raises :class:`~prefaudit.errors.DataFormatError` naming the file and line/record (and the
field when one is at fault): invalid UTF-8 by its line, a damaged gzip stream by the last
line read, JSON nested past Python's recursion limit, an integer over Python's int-string
limit. Text files may start with a UTF-8 byte-order mark (``utf-8-sig``).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefaudit.errors import DataFormatError, UnknownFormatError
from prefaudit.loaders.report import LoadReport

Record = tuple[int | None, int, dict[str, Any]]
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".ndjson")
BOM = b"\xef\xbb\xbf"
_BARE_CR = re.compile(r"(?<=\r)(?!\n)")
#: The csv module's field limit is raised to this (its default, 128 KiB, rejects long responses).
CSV_FIELD_LIMIT = 2**31 - 1
#: The csv module's default field limit, in characters: longer cells are read whole and counted.
CSV_DEFAULT_FIELD_LIMIT = 131_072
#: What reading a damaged gzip stream raises: bad header/CRC (OSError), cut short (EOFError),
#: corrupt deflate data (zlib.error).
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


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


def find_data_files(folder: Path, report: LoadReport) -> list[Path]:
    """Every data file below ``folder``, in sorted order (links to files followed).

    Entries that are not read are counted in ``report`` with their path, never skipped without
    a word: ``unreadable_folder`` (permission denied or another OS error), ``symlink_loop`` (a
    link to a folder that holds it), ``linked_folder`` (a link to another folder: not followed,
    so no file is read twice) and ``dangling_link`` (a link to nothing). An unreadable
    ``folder`` itself is an error.
    """
    found: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataFormatError(f"cannot read folder ({exc.strerror or exc})", path=str(folder)) from None
    _walk(folder, entries, found, report)
    return sorted(found)


def _walk(folder: Path, entries: list[os.DirEntry[str]], found: list[Path], report: LoadReport) -> None:
    for entry in entries:
        path = folder / entry.name
        if entry.is_symlink():
            if not path.exists():
                report.note("dangling_link", str(path), "dropped", "a symbolic link to nothing; skipped")
                continue
            if path.is_dir():
                target, here = path.resolve(), path.parent.resolve()
                if target == here or target in here.parents:
                    report.note("symlink_loop", str(path), "dropped",
                                "a link to a folder that holds it (a loop); not followed")
                else:
                    report.note("linked_folder", str(path), "dropped",
                                "a link to another folder; not followed (pass that folder to read it)")
                continue
        if entry.is_dir():
            try:
                children = sorted(os.scandir(path), key=lambda e: e.name)
            except OSError as exc:
                report.note("unreadable_folder", str(path), "dropped",
                            f"a folder that cannot be read ({exc.strerror or exc}); its files skipped")
                continue
            _walk(path, children, found, report)
        elif entry.is_file() and is_data_file(path):
            found.append(path)


def iter_records(path: Path, long_cells: list[int] | None = None) -> Iterator[Record]:
    """Yield the records of ``path`` one at a time; the record number of each CSV row with a cell
    over :data:`CSV_DEFAULT_FIELD_LIMIT` characters is appended to ``long_cells`` when given."""
    kind = file_kind(path)
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "json":
        yield from _iter_json(path)
    elif kind == "csv":
        yield from _iter_csv(path, long_cells)
    else:
        yield from _iter_parquet(path)


def _open_binary(path: Path) -> Any:
    try:
        return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise DataFormatError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line, line ending kept, each decoded as strict UTF-8 (a
    leading byte-order mark dropped), so a decoding error names its own line."""
    line_no = 0
    with _open_binary(path) as fh:
        try:  # around the loop, not each line: a damaged stream fails in the file's iterator
            for raw in fh:
                if line_no == 0 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataFormatError(f"file is not valid UTF-8 ({exc.reason} at byte {exc.start + 1} "
                                          "of the line)", path=str(path), line=line_no + 1) from None
                if "\r" not in text:
                    line_no += 1
                    yield line_no, text
                    continue
                # a bare "\r" ends a line too (old Mac files), as in Python's text mode with newline=""
                for part in _BARE_CR.split(text):
                    line_no += 1
                    yield line_no, part
        except _STREAM_ERRORS as exc:
            raise DataFormatError(f"cannot read file: damaged or truncated data ({exc})",
                                  path=str(path), line=line_no + 1) from None


def _read_text(path: Path) -> str:
    """The whole file as strict UTF-8 text (a leading byte-order mark dropped)."""
    with _open_binary(path) as fh:
        try:
            data = fh.read()
        except _STREAM_ERRORS as exc:
            raise DataFormatError(f"cannot read file: damaged or truncated data ({exc})",
                                  path=str(path)) from None
    data = data[len(BOM):] if data.startswith(BOM) else data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise DataFormatError(f"file is not valid UTF-8 ({exc.reason} at byte {column} of the line)",
                              path=str(path), line=line) from None


def _parse_json(text: str, path: Path, line: int | None) -> Any:
    """``json.loads`` whose every failure is a DataFormatError naming the line (and, for an
    over-long integer, the field)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON ({exc.msg} at column {exc.colno})", path=str(path),
                              line=exc.lineno if line is None else line) from None
    except RecursionError:
        raise DataFormatError("JSON nested too deeply (past Python's recursion limit)",
                              path=str(path), line=line) from None
    except ValueError:  # an integer literal over Python's int-string limit
        record, field = _long_integer_field(text, line is None)
        raise DataFormatError(f"an integer with more than {sys.get_int_max_str_digits()} digits "
                              "(Python's limit for integers); expected a number of usual size",
                              path=str(path), line=line, record=record, field=field) from None


class _LongInt:
    """Placeholder for an integer literal over the int-string limit (see _long_integer_field)."""


def _long_integer_field(text: str, is_list: bool) -> tuple[int | None, str | None]:
    """(1-based record in a JSON list, dotted field path) of the first over-long integer."""
    limit = sys.get_int_max_str_digits()
    try:
        data = json.loads(text, parse_int=lambda s: _LongInt() if len(s.lstrip("-")) > limit else int(s))
    except (ValueError, RecursionError):
        return None, None
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        obj, where = stack.pop()
        if isinstance(obj, _LongInt):
            break
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        stack += reversed([(v, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}")
                           for k, v in items])
    else:
        return None, None
    if is_list and where.startswith("["):
        index, _, rest = where[1:].partition("]")
        return int(index) + 1, rest.lstrip(".") or None
    return None, where.lstrip(".") or None


#: The C scanner behind ``json.loads`` (default settings), called directly for JSONL lines.
_SCAN_JSON = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def _parse_json_line(line: str, path: Path, line_no: int) -> Any:
    """``json.loads(line)`` without its per-call overhead: the scanner reads the value at
    the line's start and the rest must be JSON whitespace (the line ending). Anything else
    (leading space, extra data, any error) goes through :func:`_parse_json`, so values and
    error messages are exactly those of ``json.loads``."""
    try:
        value, end = _SCAN_JSON(line, 0)
    except (StopIteration, ValueError, RecursionError):
        return _parse_json(line, path, line_no)
    if end == len(line) or not line[end:].strip(_JSON_SPACE):
        return value
    return _parse_json(line, path, line_no)


def _iter_jsonl(path: Path) -> Iterator[Record]:
    record_no = 0
    for line_no, line in text_lines(path):
        if line.isspace() or not line:  # blank line (no stripped copy of the record)
            continue
        rec = _parse_json_line(line, path, line_no)
        record_no += 1
        if not isinstance(rec, dict):
            raise DataFormatError(f"expected a JSON object, got {type(rec).__name__}",
                                  path=str(path), line=line_no)
        yield line_no, record_no, rec


def _iter_json(path: Path) -> Iterator[Record]:
    data = _parse_json(_read_text(path), path, None)
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
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise DataFormatError(f"expected a JSON object, got {type(rec).__name__}",
                                  path=str(path), record=i)
        yield None, i, rec


def _iter_csv(path: Path, long_cells: list[int] | None = None) -> Iterator[Record]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text for _, text in text_lines(path))
    try:
        header = next(reader, None)
        if header is None:
            return
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise DataFormatError("column appears twice in the header; expected unique column names",
                                      path=str(path), line=1, field=column)
            seen.add(column)
        n, record_no = len(header), 0
        for cells in reader:
            if not cells:  # a blank line
                continue
            if len(cells) > n:
                raise DataFormatError(f"row has {len(cells)} fields, header has {n}",
                                      path=str(path), line=reader.line_num)
            record_no += 1
            if long_cells is not None and any(len(c) > CSV_DEFAULT_FIELD_LIMIT for c in cells):
                long_cells.append(record_no)
            yield reader.line_num, record_no, {k: _csv_value(k, cells[j] if j < len(cells) else None)
                                               for j, k in enumerate(header)}
    except csv.Error as exc:
        raise DataFormatError(f"malformed CSV ({exc})", path=str(path), line=reader.line_num) from None


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
        except (ValueError, RecursionError):  # not JSON (or too deep/long for it): text
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
    try:
        for batch in pf.iter_batches(batch_size=8192):
            for rec in batch.to_pylist():
                i += 1
                yield None, i, rec
    except (OSError, ValueError) as exc:  # damage past the footer: a bad page or column chunk
        raise DataFormatError(f"not a readable parquet file after record {i} ({exc})",
                              path=str(path)) from None
