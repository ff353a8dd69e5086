"""Errors prefaudit raises on bad input.

Every error names where the problem is (file, line or record, field) and what was
expected, so the CLI can print it in one or two lines and exit 2 without a traceback.
"""

from __future__ import annotations


class PrefauditError(Exception):
    """Base class of every error caused by bad input or bad usage (CLI exit code 2)."""


class DataFormatError(PrefauditError):
    """A data file or record does not have the shape its format requires.

    Parameters
    ----------
    message:
        What is wrong and what was expected.
    path:
        The file (or "<DataFrame>") the record came from.
    line:
        1-based line number in the file, when the format is line-based.
    record:
        1-based record number (row of a CSV/parquet, element of a JSON list).
    field:
        The field (key or column) at fault, when one is.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.record, self.field = path, line, record, field
        self.reason = message
        where = []
        if path:
            where.append(path)
        if line is not None:
            where.append(f"line {line}")
        elif record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownFormatError(PrefauditError):
    """The format of a file could not be detected, or an unknown format name was given."""


class SchemaError(PrefauditError):
    """A table does not satisfy the canonical pair-table schema (see `prefaudit.schema`)."""


class PolicyError(PrefauditError):
    """A gate policy file is malformed or names a metric prefaudit does not know."""


class ConfigError(PrefauditError):
    """A bad option value or a missing optional dependency/model."""
