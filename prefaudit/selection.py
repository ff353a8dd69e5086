"""The pairs training would use: one implementation for ``train_dpo`` and ``export``.

From a canonical table and its audit: one pair per comparison (several judgements collapsed
by majority, :func:`prefaudit.schema.to_pairs`), ties dropped, pairs flagged for the chosen
reasons dropped, optionally a length-balanced subsample, optionally the pairs with the
lowest / highest reference margins dropped. Every step counts what it dropped, by reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from prefaudit.audit import AuditResult, table_hash
from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.schema import MESSAGE_COLUMNS, to_pairs

#: Columns of a selected pair (plus the message columns when the data is conversational).
PAIR_COLUMNS: tuple[str, ...] = ("pair_id", "prompt", "chosen", "rejected")


def select_pairs(table: pd.DataFrame, result: AuditResult, *, drop_flags: Sequence[str] = (),
                 length_balance: bool = False, margin_drop: tuple[float, float] | None = None,
                 ches_drop: float | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict[str, int]]:
    """The pairs training would use and how many were dropped per reason.

    Parameters
    ----------
    table, result:
        A canonical table and its audit (whose flags and margins the selection reads).
    drop_flags:
        Flag reasons whose pairs are dropped; ``"all"`` drops any flagged pair. A reason the
        audit never flagged drops 0 pairs (and is counted as 0, so a typo shows).
    length_balance:
        Keep a seeded length-balanced subsample
        (:func:`prefaudit.stats.length_balance.length_balanced_sample`).
    margin_drop:
        ``(low, high)`` fractions of pairs dropped with the lowest / highest reference margins
        (needs the audit's ``margins`` analyzer).
    ches_drop:
        Fraction of pairs dropped with the highest length-normalised CHES, the reference's
        likelihood-displacement risk (:func:`prefaudit.analyzers.margins.select_by_ches`).

    Returns
    -------
    ``(pairs, dropped)``: :data:`PAIR_COLUMNS` (plus ``*_messages`` for conversational
    data), and ``{"tie": n, <flag reason>: n, "length_balance": n, "margin": n, "ches": n}``.
    """
    from prefaudit.analyzers.margins import select_by_ches, select_by_margin

    pairs, dropped = training_pairs(table, result, drop_flags, length_balance, seed)
    if margin_drop is not None:
        pairs, dropped["margin"] = drop_by_score(
            pairs, result, lambda d: select_by_margin(d, drop_low=margin_drop[0], drop_high=margin_drop[1]))
    if ches_drop is not None:
        pairs, dropped["ches"] = drop_by_score(pairs, result,
                                               lambda d: select_by_ches(d, drop_high=ches_drop))
    return pairs, dropped


def training_pairs(table: pd.DataFrame, result: AuditResult, drop_flags: Sequence[str],
                   length_balance: bool, seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """One non-tied pair per comparison, minus flagged pairs and (optionally) length-balanced."""
    dropped: dict[str, int] = {}
    pairs = to_pairs(table)
    dropped["tie"] = int(pairs["tie"].sum())
    pairs = pairs[~pairs["tie"]]
    if drop_flags:
        flags = result.pair_flags()
        reasons = sorted(set(flags["reason"])) if "all" in drop_flags else sorted(set(drop_flags))
        for reason in reasons:
            ids = set(flags.loc[flags["reason"] == reason, "pair_id"].astype(str))
            hit = pairs["pair_id"].astype(str).isin(ids)
            dropped[reason] = int(hit.sum())  # 0 for a reason the audit never flagged (shown in run.log)
            pairs = pairs[~hit]
    if length_balance:
        from prefaudit.stats.length_balance import length_balanced_sample

        n = len(pairs)
        pairs = length_balanced_sample(pairs, seed=seed)
        dropped["length_balance"] = n - len(pairs)
    columns = [*PAIR_COLUMNS, *(c for c in MESSAGE_COLUMNS if c in pairs.columns)]
    return pairs[columns].reset_index(drop=True), dropped


def drop_by_score(pairs: pd.DataFrame, result: AuditResult,
                  select: Callable[[pd.DataFrame], pd.Index]) -> tuple[pd.DataFrame, int]:
    """``pairs`` kept by ``select`` (a margins selection over the audit's per-pair margins data:
    :func:`~prefaudit.analyzers.margins.select_by_margin` or ``select_by_ches``), and how many went."""
    margins = result.results.get("margins")
    if margins is None or margins.pair_data is None:
        raise ConfigError("margin and CHES selection need the audit's margins analyzer (per-pair reference "
                          "scores); run the audit with a reference model")
    scored = margins.pair_data.loc[margins.pair_data.index.isin(pairs["pair_id"])]
    keep = set(select(scored).astype(str))
    kept = pairs[pairs["pair_id"].astype(str).isin(keep)].reset_index(drop=True)
    return kept, len(pairs) - len(kept)


def check_audit(result: AuditResult, table: pd.DataFrame, drop_flags: Sequence[str] = (), *,
                where: str = "the audit given") -> None:
    """Refuse an audit that is not of ``table`` (its ``content_sha256`` differs) and, when flags
    are to be dropped, one that holds only its worst flags (``pair_flags.csv`` was not read)."""
    saved, here = result.summary.get("content_sha256"), table_hash(table)
    if saved != here:
        raise DataFormatError(f"the audit was computed on other data (content_sha256 {str(saved)[:12]}..., "
                              f"this data {here[:12]}...); audit this data first, or pass the data that "
                              "audit read", path=where)
    if drop_flags and not result.flags_complete:
        raise DataFormatError("the audit holds only its worst flags (its pair_flags.csv was not read); "
                              "dropping flagged pairs needs every flag: keep pair_flags.csv beside "
                              "audit.json", path=where)

