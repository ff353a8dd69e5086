"""``export``: the audited, cleaned pairs as a TRL-ready preference dataset, plus a sidecar JSON.

The pairs are exactly those training would use (:func:`prefaudit.selection.select_pairs`:
majority-collapsed, ties dropped, flagged pairs dropped by reason, optional length balance
and margin drop). Formats:

- ``trl``: parquet with ``prompt``, ``chosen``, ``rejected`` (TRL's standard preference
  format): message lists for conversational data, text otherwise;
- ``trl-conversational``: parquet, always message lists (a text prompt becomes one user
  message, a text response one assistant message), for training through a chat template;
- ``jsonl``: the ``trl`` columns as JSON lines.

Texts are written as loaded (TRL joins prompt and response with nothing in between).
``pair_id`` is kept. When the audit's margins analyzer scored every exported pair, the
reference log-probs come along as ``ref_chosen_logps`` / ``ref_rejected_logps`` (the names
TRL's DPO collator reads; see README on reusing them).

The sidecar ``<out stem>.export.json`` records what was dropped per reason, the audit's
``content_sha256`` (the data it audited) and verdict, and the options.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prefaudit import __version__
from prefaudit.audit import AuditResult
from prefaudit.errors import ConfigError
from prefaudit.schema import MESSAGE_COLUMNS
from prefaudit.selection import check_audit, select_pairs

FORMATS: tuple[str, ...] = ("trl", "trl-conversational", "jsonl")
#: Reference log-prob columns, named as TRL's DPO collator reads them.
REF_COLUMNS: tuple[str, ...] = ("ref_chosen_logps", "ref_rejected_logps")
SIDECAR_SUFFIX = ".export.json"


def export_pairs(table: pd.DataFrame, result: AuditResult, *, drop_flags: Sequence[str] = (),
                 length_balance: bool = False, margin_drop: tuple[float, float] | None = None,
                 ches_drop: float | None = None, seed: int = 0, format: str = "trl") -> pd.DataFrame:
    """The pairs training would use, as a TRL preference dataset.

    Parameters are those of :func:`prefaudit.selection.select_pairs`, plus ``format`` (one of
    :data:`FORMATS`; ``jsonl`` gives the same frame as ``trl``). Returns a frame with
    ``prompt``, ``chosen``, ``rejected``, ``pair_id`` and, when the audit's margins cover
    every pair, :data:`REF_COLUMNS`; ``frame.attrs["dropped"]`` holds the pairs dropped per
    reason. ``result`` must be an audit of ``table`` (same ``content_sha256``).
    """
    if format not in FORMATS:
        raise ConfigError(f"export format {format!r}; expected one of {', '.join(FORMATS)}")
    check_audit(result, table, drop_flags, where="export_pairs(table, result)")
    pairs, dropped = select_pairs(table, result, drop_flags=drop_flags, length_balance=length_balance,
                                  margin_drop=margin_drop, ches_drop=ches_drop, seed=seed)
    conversational = all(c in pairs.columns for c in MESSAGE_COLUMNS) and bool(len(pairs)) and \
        bool(pairs["prompt_messages"].map(lambda m: isinstance(m, list)).all())
    if conversational:
        sides = {k: pairs[f"{k}_messages"].tolist() for k in ("prompt", "chosen", "rejected")}
    elif format == "trl-conversational":
        sides = {"prompt": [[{"role": "user", "content": p}] for p in pairs["prompt"]],
                 **{k: [[{"role": "assistant", "content": r}] for r in pairs[k]]
                    for k in ("chosen", "rejected")}}
    else:
        sides = {k: pairs[k].tolist() for k in ("prompt", "chosen", "rejected")}
    out = pd.DataFrame({**sides, "pair_id": pairs["pair_id"].astype(str).tolist()})
    ref = _reference_logps(result, out["pair_id"])
    if ref is not None:
        out["ref_chosen_logps"], out["ref_rejected_logps"] = ref
    out.attrs["dropped"] = dropped
    return out


def _reference_logps(result: AuditResult, pair_ids: pd.Series) -> tuple[list[float], list[float]] | None:
    margins = result.results.get("margins")
    data = None if margins is None else margins.pair_data
    if data is None or not len(pair_ids) or not pair_ids.isin(data.index.astype(str)).all():
        return None
    data = data.set_axis(data.index.astype(str)).loc[pair_ids]
    return data["chosen_logp"].astype(float).tolist(), data["rejected_logp"].astype(float).tolist()


def output_path(out: str | Path, format: str) -> Path:
    """``out`` checked against ``format``: ``.jsonl`` for jsonl, ``.parquet`` otherwise."""
    path = Path(out)
    suffix = ".jsonl" if format == "jsonl" else ".parquet"
    if path.suffix.lower() != suffix:
        raise ConfigError(f"--out {path}: format {format!r} writes a {suffix} file")
    return path


def write_export(frame: pd.DataFrame, out: str | Path, result: AuditResult, *, format: str = "trl",
                 options: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``frame`` (from :func:`export_pairs`) to ``out`` and its sidecar JSON beside it."""
    path = output_path(out, format)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    sidecar = path.with_name(path.stem + SIDECAR_SUFFIX)
    dropped = frame.attrs.get("dropped", {})
    meta = {
        "prefaudit_version": __version__,
        "file": path.name,
        "format": format,
        "n_pairs": int(len(frame)),
        "n_dropped": int(sum(dropped.values())),
        "dropped": dropped,
        "columns": list(frame.columns),
        "reference_logps": all(c in frame.columns for c in REF_COLUMNS),
        "content_sha256": result.summary.get("content_sha256"),
        "verdict": result.verdict,
        "options": options or {},
    }
    sidecar.write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    return {"data": path, "sidecar": sidecar}
