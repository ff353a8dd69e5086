"""Loaders: public preference-data formats -> the canonical pair table (+ a LoadReport)."""

from prefaudit.loaders.core import FORMAT_NAMES, Loaded, detect_format, format_module, load
from prefaudit.loaders.report import LoadEvent, LoadReport

__all__ = ["FORMAT_NAMES", "LoadEvent", "LoadReport", "Loaded", "detect_format", "format_module", "load"]
