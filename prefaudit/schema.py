"""The canonical pair table every loader produces and every analyzer reads.

One row per *judgement* (one annotator's verdict on one comparison):

============  ===========  =============================================================
column        dtype        meaning
============  ===========  =============================================================
pair_id       str          stable id of the (prompt, response A, response B) comparison
prompt        str          the prompt, or the conversation before the last assistant turn
chosen        str          the response this judgement prefers
rejected      str          the response it does not prefer
annotator     str or NA    who judged (NA for single-label datasets)
tie           bool         judged equal; chosen/rejected are then in source order (A, B)
strength      float or NA  margin the source gives (score or rating difference), if any
source        str          file or dataset name
============  ===========  =============================================================

Optional columns: ``prompt_messages``, ``chosen_messages``, ``rejected_messages`` (lists of
``{"role", "content"}`` dicts, for conversational data, so a chat template can be applied
later), ``load_flags`` (";"-separated codes a loader attached to a kept-but-suspect row,
e.g. ``prefix_mismatch``), and, where the source says so:

==================  ==============  ========================================================
column              dtype           meaning
==================  ==============  ========================================================
chosen_shown_first  boolean or NA   the judge saw ``chosen`` first (True), ``rejected`` first
                                    (False); NA when the format does not record the order.
                                    Ties have it too (which of the two texts in ``chosen``
                                    and ``rejected`` was shown first).
chosen_model        str or NA       the model (generator) that wrote ``chosen``
rejected_model      str or NA       the model that wrote ``rejected``
repeat              bool            a later judgement of the same comparison by the same
                                    annotator (kept for swap consistency; see
                                    :func:`first_judgements`)
==================  ==============  ========================================================

A missing optional column means "not known" for every row. Only the ``judges`` analyzer and
the *as-presented* agreement numbers read the presentation order; everything else is
orientation-free (it gives the same number whichever response is called A).

Several rows share a ``pair_id`` when several annotators judged the same comparison;
:func:`label_matrix` turns them into a pairs x annotators matrix of labels A / B / tie, and
:func:`to_pairs` collapses them into one training pair per comparison. Both count each
annotator once per comparison: its first judgement (rows with ``repeat`` set are left out).
:func:`label_triples` holds the label matrix's labels as integer (pair, annotator, label)
codes without its empty cells: what the agreement analyzer works on, so that a million pairs
or a crowd of annotators never needs the dense matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from prefaudit.errors import SchemaError

REQUIRED_COLUMNS: tuple[str, ...] = (
    "pair_id", "prompt", "chosen", "rejected", "annotator", "tie", "strength", "source",
)
MESSAGE_COLUMNS: tuple[str, ...] = ("prompt_messages", "chosen_messages", "rejected_messages")
#: Optional provenance columns: presentation order and the model behind each response.
ORDER_COLUMN = "chosen_shown_first"
MODEL_COLUMNS: tuple[str, str] = ("chosen_model", "rejected_model")
REPEAT_COLUMN = "repeat"
OPTIONAL_COLUMNS: tuple[str, ...] = (*MESSAGE_COLUMNS, "load_flags", ORDER_COLUMN, *MODEL_COLUMNS,
                                     REPEAT_COLUMN)

#: Codes of the label matrix: the annotator preferred response A, response B, or called a tie.
LABEL_A, LABEL_B, LABEL_TIE = 0, 1, 2
LABEL_NAMES: tuple[str, ...] = ("A", "B", "tie")
#: The annotator name of judgements whose annotator is NA (single-label datasets).
SINGLE_ANNOTATOR = "_single"


def empty_table() -> pd.DataFrame:
    """An empty canonical table with the right dtypes."""
    return normalize_dtypes(pd.DataFrame({c: [] for c in REQUIRED_COLUMNS}))


def normalize_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """Cast the required columns to their canonical dtypes (on a shallow copy: pandas copies on
    write, so ``table`` is left as it was and no column is copied that needs no cast)."""
    out = table.copy(deep=False)
    for col in ("pair_id", "prompt", "chosen", "rejected", "source"):
        out[col] = out[col].astype(object)
    out["annotator"] = out["annotator"].astype("string")
    out["tie"] = out["tie"].astype(bool)
    out["strength"] = pd.to_numeric(out["strength"], errors="raise").astype("float64")
    if ORDER_COLUMN in out.columns:
        out[ORDER_COLUMN] = out[ORDER_COLUMN].astype("boolean")
    for col in MODEL_COLUMNS:
        if col in out.columns:
            out[col] = out[col].astype("string")
    if REPEAT_COLUMN in out.columns:
        out[REPEAT_COLUMN] = out[REPEAT_COLUMN].astype("boolean").fillna(False).astype(bool)
    return out.reset_index(drop=True)


def validate(table: pd.DataFrame) -> pd.DataFrame:
    """Check that ``table`` is a canonical pair table and return it with canonical dtypes.

    Raises :class:`~prefaudit.errors.SchemaError` naming the column and the first bad row.
    Text columns must hold ``str`` (empty strings are allowed: hygiene reports them);
    ``tie`` must be boolean; ``strength`` numeric or missing; ``pair_id`` never missing.
    """
    if not isinstance(table, pd.DataFrame):
        raise SchemaError(f"expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(
            f"table is missing required column(s) {missing}; required: {list(REQUIRED_COLUMNS)}"
        )
    for col in ("pair_id", "prompt", "chosen", "rejected", "source"):
        if _all_text(table[col]):
            continue
        bad = ~table[col].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SchemaError(
                f"column '{col}', row {i}: expected text, got {type(table[col].iloc[i]).__name__} "
                f"({table[col].iloc[i]!r:.60})"
            )
    tie = table["tie"]
    if not (pd.api.types.is_bool_dtype(tie) or tie.map(lambda v: isinstance(v, (bool, np.bool_))).all()):
        raise SchemaError("column 'tie': expected booleans")
    try:
        pd.to_numeric(table["strength"], errors="raise")
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"column 'strength': expected numbers or missing values ({exc})") from None
    for col, ok in ((ORDER_COLUMN, _is_bool_or_missing), (REPEAT_COLUMN, _is_bool_or_missing),
                    *((c, _is_text_or_missing) for c in MODEL_COLUMNS)):
        if col in table.columns and not _typed_as(table[col], ok):
            bad = ~table[col].map(ok).to_numpy(dtype=bool)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                kind = "True, False or missing" if ok is _is_bool_or_missing else "text or missing"
                raise SchemaError(f"column '{col}', row {i}: expected {kind}, got {table[col].iloc[i]!r:.60}")
    for col in MESSAGE_COLUMNS:
        if col in table.columns:
            bad = ~table[col].map(_is_messages_or_missing).to_numpy(dtype=bool)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise SchemaError(
                    f"column '{col}', row {i}: expected a list of {{'role', 'content'}} dicts"
                )
    return normalize_dtypes(table)


def _all_text(column: pd.Series) -> bool:
    """Whether every value is a ``str``, by a C scan; the per-value check that names the first
    bad row runs only when this says no."""
    if isinstance(column.dtype, pd.StringDtype):
        return not column.isna().any()
    return column.dtype == object and pd.api.types.infer_dtype(column, skipna=False) == "string"


def _typed_as(column: pd.Series, ok: Callable[[object], bool]) -> bool:
    """Whether the column's dtype already guarantees ``ok`` for every value (booleans or
    missing in a boolean dtype, text or missing in a string dtype)."""
    if ok is _is_bool_or_missing:
        return pd.api.types.is_bool_dtype(column.dtype)
    return isinstance(column.dtype, pd.StringDtype)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _is_bool_or_missing(value: object) -> bool:
    return _is_missing(value) or isinstance(value, (bool, np.bool_))


def _is_text_or_missing(value: object) -> bool:
    return _is_missing(value) or isinstance(value, str)


def _is_messages_or_missing(value: object) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )


def is_conversational(table: pd.DataFrame) -> bool:
    """Whether the table keeps message lists (so a chat template can be applied)."""
    return "prompt_messages" in table.columns and table["prompt_messages"].notna().any()


def n_annotators_per_pair(table: pd.DataFrame) -> pd.Series:
    """Number of judgements per ``pair_id``."""
    return table.groupby("pair_id", sort=False).size()


def is_multi_annotator(table: pd.DataFrame) -> bool:
    """True when at least one comparison was judged more than once."""
    return bool(len(table)) and bool((n_annotators_per_pair(table) > 1).any())


def first_judgements(table: pd.DataFrame) -> pd.DataFrame:
    """The table without ``repeat`` rows: each annotator's first judgement of each comparison.

    This is what every analyzer except ``judges`` reads (a repeated judgement would count one
    annotator twice); ``judges`` keeps the repeats to measure swap consistency.
    """
    if REPEAT_COLUMN not in table.columns or not table[REPEAT_COLUMN].any():
        return table
    return table[~table[REPEAT_COLUMN].to_numpy(dtype=bool)].reset_index(drop=True)


def shown_first(table: pd.DataFrame) -> pd.Series:
    """Per row, whether ``chosen`` was shown first (nullable boolean; all NA when unknown)."""
    if ORDER_COLUMN not in table.columns:
        return pd.Series(pd.array([pd.NA] * len(table), dtype="boolean"), index=table.index)
    return table[ORDER_COLUMN].astype("boolean")


def has_order(table: pd.DataFrame) -> bool:
    """Whether any judgement records which response was shown first."""
    return bool(shown_first(table).notna().any())


def presented_label_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs x annotators matrix of labels *as presented*: 0 = the response shown first won,
    1 = the one shown second won, 2 = tie, NaN = not judged or order unknown.

    Same rows and columns as :func:`label_matrix` (repeats left out). This coding depends on
    the order the judge saw; only the as-presented agreement numbers use it.
    """
    return _frame(label_triples(table, as_presented=True))


def response_a(table: pd.DataFrame, codes: np.ndarray | None = None) -> np.ndarray:
    """Per row, the text of its pair's response A: the smaller of the pair's two texts
    (taken from the pair's first row). ``codes`` are the rows' :func:`pair_codes` if
    already computed."""
    if codes is None:
        codes, _ = pair_codes(table)
    text_a, _ = _pair_response_a(table, codes)
    return text_a[codes]


def _pair_response_a(table: pd.DataFrame, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (in code order), its response A and the index of its first row."""
    first_row = np.unique(codes, return_index=True)[1]  # code c's first row is first_row[c]
    first_c = table["chosen"].to_numpy(dtype=object)[first_row]
    first_r = table["rejected"].to_numpy(dtype=object)[first_row]
    return np.where(first_c <= first_r, first_c, first_r), first_row


def label_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs x annotators matrix of labels (0 = A, 1 = B, 2 = tie, NaN = not judged).

    Rows are ``pair_id`` in order of first appearance, columns are annotators sorted by name.
    ``repeat`` rows are left out (:func:`first_judgements`); if an annotator still judged the
    same pair twice, their last judgement counts. :func:`label_triples` holds the same labels
    without the empty cells.
    """
    return _frame(label_triples(table))


def _frame(triples: LabelTriples) -> pd.DataFrame:
    return pd.DataFrame(triples.dense(), index=pd.Index(triples.pair_ids, name="pair_id"),
                        columns=pd.Index(triples.annotators, name="annotator"))


def label_counts(codes: np.ndarray, labels: np.ndarray, n_pairs: int) -> np.ndarray:
    """``(n_pairs, 3)`` counts of labels A, B and tie per pair code."""
    return np.bincount(codes * 3 + labels, minlength=3 * n_pairs).reshape(n_pairs, 3)


def majority_labels(counts: np.ndarray) -> np.ndarray:
    """Per pair, the label :func:`to_pairs` keeps from its (A, B, tie) vote counts: A or B when
    it has more votes than the other and at least as many as ties; a tie otherwise."""
    a, b, t = counts[:, LABEL_A], counts[:, LABEL_B], counts[:, LABEL_TIE]
    return np.where((a > b) & (a >= t), LABEL_A, np.where((b > a) & (b >= t), LABEL_B, LABEL_TIE))


def to_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison, oriented by the majority of its judgements.

    Single-label tables pass through unchanged. For multi-annotator tables, the row of each
    pair is the one whose label (A or B) has the most votes; pairs whose majority is a tie or
    whose A and B votes are level keep a tie row (``tie=True``). Adds ``n_judgements`` and
    ``vote_share`` (share of the pair's judgements that agree with the kept orientation).
    ``repeat`` rows are left out. When the kept row is turned round, ``chosen_model`` and
    ``rejected_model`` swap with the texts and ``chosen_shown_first`` is negated, so they
    still describe the first judgement's presentation.
    """
    table = first_judgements(table)
    codes, pair_ids = pair_codes(table)
    if not len(table) or len(pair_ids) == len(table):  # no pair judged twice
        out = table.copy()
        out["n_judgements"] = 1
        out["vote_share"] = np.where(out["tie"], np.nan, 1.0)
        return out.reset_index(drop=True)
    counts = label_counts(codes, oriented_labels(table, codes), len(pair_ids))
    a, b, t = counts[:, LABEL_A], counts[:, LABEL_B], counts[:, LABEL_TIE]
    n = a + b + t
    winner = majority_labels(counts)
    text_a, first_row = _pair_response_a(table, codes)
    # the first row of each pair (its pair_id is pair_ids[k]), pair_id as the first column;
    # text columns stay object, as in the canonical table (pandas 3 would otherwise copy every
    # id and text into Arrow strings: a second copy of all texts in each analyzer)
    out = table.take(first_row).reset_index(drop=True)
    if out.columns[0] != "pair_id":
        out = out[["pair_id", *(c for c in out.columns if c != "pair_id")]]
    # the first row's chosen is response A or B; ties keep the first row's (source) order
    first_is_a = out["chosen"].to_numpy() == text_a
    keep = np.where(winner == LABEL_TIE, True, np.where(winner == LABEL_A, first_is_a, ~first_is_a))
    c_text, r_text = out["chosen"].to_numpy(), out["rejected"].to_numpy()
    out["chosen"] = pd.Series(np.where(keep, c_text, r_text), dtype=object)
    out["rejected"] = pd.Series(np.where(keep, r_text, c_text), dtype=object)
    out["tie"] = winner == LABEL_TIE
    out["annotator"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["n_judgements"] = n
    out["vote_share"] = np.where(winner == LABEL_A, a, np.where(winner == LABEL_B, b, t)) / np.maximum(n, 1)
    for c_col, r_col in (("chosen_messages", "rejected_messages"), MODEL_COLUMNS):
        if c_col in out.columns:
            cm, rm = out[c_col].to_numpy(), out[r_col].to_numpy()
            out[c_col] = np.where(keep, cm, rm)
            out[r_col] = np.where(keep, rm, cm)
    if ORDER_COLUMN in out.columns:
        out[ORDER_COLUMN] = out[ORDER_COLUMN].where(keep, ~out[ORDER_COLUMN])
    return normalize_dtypes(out) if MODEL_COLUMNS[0] in out.columns else out


class LabelTriples(NamedTuple):
    """The labels of a table as integer codes: one (pair, annotator, label) triple per label.

    ``pair`` indexes ``pair_ids`` (the comparisons in order of first appearance),
    ``annotator`` indexes ``annotators`` (sorted by name; NA is ``"_single"``). Triples are
    sorted by (pair, annotator) and hold one label per (pair, annotator): the last one, as in
    :func:`label_matrix`. This is the label matrix without its empty cells: its memory grows
    with the number of labels, not with pairs x annotators. ``final`` is, per pair, the label
    :func:`to_pairs` keeps (:func:`majority_labels` of all the pair's judgements), coded like
    :func:`label_matrix` whatever the coding of ``label``.
    """

    pair: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    pair_ids: np.ndarray
    annotators: list[str]
    final: np.ndarray

    def dense(self) -> np.ndarray:
        """The pairs x annotators matrix of the labels (NaN = not judged)."""
        mat = np.full((len(self.pair_ids), len(self.annotators)), np.nan)
        mat[self.pair, self.annotator] = self.label
        return mat


def pair_codes(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the integer code of its ``pair_id`` (0, 1, ... in order of first appearance),
    and the distinct ids in that order."""
    codes, ids = pd.factorize(table["pair_id"].to_numpy(dtype=object), sort=False)
    return codes.astype(np.int64, copy=False), np.asarray(ids, dtype=object)


def annotator_codes(table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per row, the integer code of its annotator, and the annotator names sorted (NA is
    ``"_single"``); no per-row string is made."""
    codes, names = pd.factorize(table["annotator"].astype("string"), sort=False)
    names = [str(n) for n in names]
    if (codes < 0).any():
        if SINGLE_ANNOTATOR not in names:
            names.append(SINGLE_ANNOTATOR)
        codes = np.where(codes < 0, names.index(SINGLE_ANNOTATOR), codes)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
    return rank[codes], sorted(names)


def label_triples(table: pd.DataFrame, *, as_presented: bool = False) -> LabelTriples:
    """The labels of ``table`` (repeats left out) as :class:`LabelTriples`.

    Labels are coded as in :func:`label_matrix` (0 = response A, the text that sorts first),
    or with ``as_presented`` as in :func:`presented_label_matrix` (0 = the response shown
    first won); judgements of unknown order then have no triple. Either way every pair and
    annotator of the table keeps its code.
    """
    table = first_judgements(table)
    pair, pair_ids = pair_codes(table)
    annotator, annotators = annotator_codes(table)
    label = oriented_labels(table, pair)
    final = majority_labels(label_counts(pair, label, len(pair_ids)))
    if as_presented:
        label = presented_labels(table)
        known = ~np.isnan(label)
        pair, annotator, label = pair[known], annotator[known], label[known].astype(np.int8)
    key = pair * max(len(annotators), 1) + annotator
    # the last label of each (pair, annotator): first occurrence in reversed order
    _, last = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - last
    return LabelTriples(pair[keep], annotator[keep], label[keep], pair_ids, annotators, final)


def presented_labels(table: pd.DataFrame) -> np.ndarray:
    """Per row, the label as presented: 0 = the response shown first won, 1 = the one shown
    second, 2 = tie; NaN where the order is unknown."""
    first = shown_first(table).to_numpy(dtype="float64", na_value=np.nan)
    label = np.where(table["tie"].to_numpy(dtype=bool), LABEL_TIE,
                     np.where(first == 1.0, LABEL_A, LABEL_B)).astype("float64")
    label[np.isnan(first)] = np.nan
    return label


def oriented_labels(table: pd.DataFrame, codes: np.ndarray | None = None) -> np.ndarray:
    """Per row, its label on the oriented pair as int8: LABEL_A / LABEL_B when it prefers the
    pair's response A / B, LABEL_TIE for a tie. Response A is whichever of the pair's two texts
    sorts first (:func:`response_a`), so no judgement decides the orientation (orienting by, say,
    the first annotator's choice would make that annotator's labels nearly all A and skew the
    label shares kappa and alpha depend on). ``codes`` are the rows' :func:`pair_codes` if
    already computed."""
    text_a = response_a(table, codes)
    return np.where(table["tie"].to_numpy(dtype=bool), LABEL_TIE,
                    np.where(table["chosen"].to_numpy() == text_a, LABEL_A, LABEL_B)).astype(np.int8)
