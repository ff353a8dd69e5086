"""Hygiene: defects of individual pairs that need no model to find.

Works on *pairs* (one row per ``pair_id``; multi-annotator judgements are collapsed with
:func:`prefaudit.schema.to_pairs`, so several annotators judging one pair is never a
duplicate). Flag reasons (one row per pair and reason in ``pair_flags``):

``empty_response``
    chosen or rejected is empty or whitespace only.
``identical_responses``
    chosen == rejected, exactly (score 1.0) or after normalisation (score 0.9).
``duplicate_pair``
    same prompt and the same two responses (in either order) as an earlier pair, with the same
    label or with a tie on one side; exactly (score 1.0) or after normalising case, whitespace
    and Unicode (NFKC; score 0.9). The first occurrence is not flagged; ``detail`` names it.
``contradictory_duplicate``
    same prompt and responses as another pair but the opposite preference (A > B in one,
    B > A in the other): every pair of such a group is flagged, since which label is right is
    unknown.
``near_identical``
    chosen and rejected differ (even after normalisation) but their normalised edit similarity
    (Levenshtein, 1 - distance / longer length, :func:`near_identical_similarity`) is at least
    ``near_identical``; score is the
    similarity. The regime where DPO most often lowers the chosen answer's likelihood too
    (Razin et al. 2024, "Unintentional Unalignment", arXiv 2410.08847).
``truncated``
    a response looks cut off (see :func:`prefaudit.text.truncation_sign`: unclosed code fence
    1.0, ends mid-sentence 0.8, ends with an ellipsis 0.6).
``length_outlier``
    a non-empty response whose robust z-score of log length (median / MAD over all non-empty
    chosen and rejected responses) exceeds ``length_z`` in absolute value; score is |z|.
``encoding_damage``
    prompt, chosen or rejected holds a U+FFFD replacement character, mojibake ("Ã©", "â€™")
    or a control character (see :func:`prefaudit.text.encoding_damage`).
loader codes, e.g. ``prefix_mismatch``
    rows the loader kept but marked in ``load_flags``.

Repeated prompts are reported as a metric and a table, not as per-pair flags: many datasets
compare several response pairs per prompt by design (PandaLM: 999 pairs over 170 prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prefaudit.figures import Bars, Histogram, Values
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, concat_flags, make_flags
from prefaudit.schema import LABEL_A, LABEL_B, LABEL_TIE, to_pairs
from prefaudit.text import encoding_damage, log_length, text_codes, truncation_sign

NAME = "hygiene"
METRICS = declare(
    NAME, "Hygiene: empty, duplicate, truncated and damaged pairs",
    MetricSpec("n_pairs", "number of distinct pairs (pair_id) checked"),
    MetricSpec("empty_response_share",
               "share of pairs whose chosen or rejected response is empty or whitespace only"),
    MetricSpec("identical_pair_share",
               "share of pairs whose chosen and rejected are equal (exactly or after normalisation)"),
    MetricSpec("near_identical_share",
               "share of pairs whose chosen and rejected differ (after normalisation) but have normalised "
               "edit similarity >= near_identical (likelihood displacement is most likely there)"),
    MetricSpec("exact_duplicate_pair_share",
               "share of pairs repeating an earlier pair's exact prompt and responses with a compatible "
               "label (first occurrences not counted)"),
    MetricSpec("duplicate_pair_share",
               "share of pairs repeating an earlier pair's prompt and responses after normalising "
               "case/whitespace/Unicode, with a compatible label (first occurrences not counted)"),
    MetricSpec("contradiction_share",
               "share of pairs whose prompt and responses recur in another pair with the opposite "
               "preference (all members of such groups counted)"),
    MetricSpec("duplicate_prompt_share",
               "share of pairs whose normalised prompt already appeared in an earlier pair"),
    MetricSpec("n_unique_prompts", "number of distinct prompts after normalising case/whitespace/Unicode"),
    MetricSpec("truncated_share",
               "share of pairs with a response that looks cut off (unclosed code fence, ends mid-sentence "
               "or with an ellipsis)"),
    MetricSpec("length_outlier_share",
               "share of pairs with a non-empty response whose robust z of log length exceeds length_z "
               "(a parameter) in absolute value"),
    MetricSpec("encoding_damage_share",
               "share of pairs whose prompt or a response holds U+FFFD, mojibake or a control character"),
    MetricSpec("load_flagged_share",
               "share of pairs the loader kept but marked as suspect (load_flags, e.g. prefix_mismatch)"),
    MetricSpec("flagged_share", "share of pairs with at least one hygiene flag"),
)
#: What a loader's ``load_flags`` code means, for the flag detail.
LOAD_FLAG_DETAILS: dict[str, str] = {
    "prefix_mismatch": "loader: chosen and rejected transcripts differ before the last assistant "
                       "turn (kept with the chosen side's prompt)",
}
_TRUNCATION_SCORE = {"unclosed code fence": 1.0, "ends mid-sentence": 0.8, "ends with an ellipsis": 0.6}
_MAD_TO_SD = 0.6745
#: Fewest non-empty responses for which length outliers are computed.
_MIN_LENGTH_SAMPLE = 20
_N_HIST_BINS = 30
_N_REPEATED_PROMPTS = 10
_EXCERPT = 60


def analyze_hygiene(table: pd.DataFrame, *, length_z: float = 3.5, min_truncation_words: int = 40,
                    min_last_line_words: int = 8, near_identical: float = 0.9,
                    pairs: pd.DataFrame | None = None) -> AnalyzerResult:
    """Find hygiene defects in a canonical pair table.

    Parameters
    ----------
    table:
        A canonical pair table (:mod:`prefaudit.schema`).
    length_z:
        A response is a length outlier when the robust z-score of its log length exceeds this
        in absolute value (3.5 is the Iglewicz-Hoaglin cut-off).
    min_truncation_words, min_last_line_words:
        Length conditions of the "ends mid-sentence" / "ends with an ellipsis" truncation rules
        (see :func:`prefaudit.text.truncation_sign`).
    near_identical:
        Normalised edit similarity from which two different responses are near-identical.
    pairs:
        ``to_pairs(table)`` when the caller has it (:func:`prefaudit.audit.audit` collapses the
        table once for all analyzers); None: collapsed here.

    Returns
    -------
    AnalyzerResult
        ``hygiene.*`` metrics (shares of pairs), ``pair_flags`` (reasons above), figures
        ``flag_counts``, ``length_histogram`` and ``length_outlier_bounds``, table
        ``repeated_prompts``.
    """
    result = AnalyzerResult(NAME, params={"length_z": length_z, "min_truncation_words": min_truncation_words,
                                          "min_last_line_words": min_last_line_words})
    pairs = (to_pairs(table) if pairs is None else pairs).reset_index(drop=True)
    n = len(pairs)
    result.add_metric("n_pairs", n)
    if n == 0:
        result.notes.append("The table has no pairs; no hygiene check could run.")
        return result
    ids = pairs["pair_id"].to_numpy(dtype=object)  # str already (canonical table): no Arrow round trip
    codes = _encode(pairs)
    loglen = log_length(codes.responses)
    empty = (loglen == 0) | np.fromiter(map(str.isspace, codes.responses), dtype=bool, count=len(loglen))
    tie = pairs["tie"].to_numpy(dtype=bool)

    frames = [
        _empty_flags(ids, empty[codes.chosen], empty[codes.rejected]),
        _identical_flags(ids, codes),
        _near_identical_flags(ids, codes, near_identical),
        *_duplicate_flags(ids, tie, codes),
        _truncation_flags(ids, codes, min_truncation_words, min_last_line_words),
        _length_flags(ids, codes, loglen, empty, length_z, result),
        _encoding_flags(ids, codes),
        _load_flags(table),
    ]
    flags = concat_flags(frames)
    result.pair_flags = flags

    per_reason = flags.groupby("reason")["pair_id"].nunique()
    share = {r: int(c) / n for r, c in per_reason.items()}
    exact_dup = flags.loc[(flags["reason"] == "duplicate_pair") & (flags["score"] == 1.0),
                          "pair_id"].nunique()
    first_of_prompt = _first_positions(codes.norm_prompt)
    n_unique_prompts = len(first_of_prompt)
    load_reasons = [r for r in per_reason.index if r not in _BUILTIN_REASONS]
    loader_flagged = flags.loc[flags["reason"].isin(load_reasons), "pair_id"].nunique()

    result.add_metric("empty_response_share", share.get("empty_response", 0.0))
    result.add_metric("identical_pair_share", share.get("identical_responses", 0.0))
    result.add_metric("near_identical_share", share.get("near_identical", 0.0))
    result.add_metric("exact_duplicate_pair_share", exact_dup / n)
    result.add_metric("duplicate_pair_share", share.get("duplicate_pair", 0.0))
    result.add_metric("contradiction_share", share.get("contradictory_duplicate", 0.0))
    result.add_metric("duplicate_prompt_share", (n - n_unique_prompts) / n)
    result.add_metric("n_unique_prompts", n_unique_prompts)
    result.add_metric("truncated_share", share.get("truncated", 0.0))
    result.add_metric("length_outlier_share", share.get("length_outlier", 0.0))
    result.add_metric("encoding_damage_share", share.get("encoding_damage", 0.0))
    result.add_metric("load_flagged_share", loader_flagged / n)
    result.add_metric("flagged_share", flags["pair_id"].nunique() / n)

    result.add_figure("flag_counts", Bars(labels=[str(r) for r in per_reason.index],
                                          values={"pairs": per_reason.to_numpy()}))
    result.add_figure("length_histogram", _length_histogram(loglen[codes.chosen], loglen[codes.rejected]))
    result.tables["repeated_prompts"] = _repeated_prompts(codes, first_of_prompt)
    if "load_flags" not in table.columns:
        result.notes.append("The table has no load_flags column; loader marks could not be reported.")
    return result


_BUILTIN_REASONS = frozenset({
    "empty_response", "identical_responses", "near_identical", "duplicate_pair", "contradictory_duplicate",
    "truncated", "length_outlier", "encoding_damage",
})


@dataclass(frozen=True)
class _Codes:
    """The pairs' texts as integer codes into arrays of unique texts, so that every per-text
    check runs once per distinct text. Codes are numbered in order of first appearance."""

    prompts: np.ndarray  # distinct prompt texts
    responses: np.ndarray  # distinct response texts (chosen and rejected together)
    prompt: np.ndarray  # per pair: index into ``prompts``
    chosen: np.ndarray  # per pair: index into ``responses``
    rejected: np.ndarray
    norm_prompt: np.ndarray  # per pair: code of the normalised prompt
    norm_chosen: np.ndarray  # per pair: code of the normalised response
    norm_rejected: np.ndarray


def _encode(pairs: pd.DataFrame) -> _Codes:
    """Codes of the texts (:func:`prefaudit.text.text_codes`); only distinct texts are normalised."""
    n = len(pairs)
    prompt_texts = pairs["prompt"].to_numpy(dtype=object)
    response_texts = np.concatenate([pairs["chosen"].to_numpy(dtype=object),
                                     pairs["rejected"].to_numpy(dtype=object)])
    prompt, resp = text_codes(prompt_texts), text_codes(response_texts)
    prompts = prompt_texts[_first_positions(prompt)]
    responses = response_texts[_first_positions(resp)]
    norm_p = text_codes(prompts, normalized=True)[prompt]
    norm_r = text_codes(responses, normalized=True)[resp]
    return _Codes(prompts, responses, prompt, resp[:n], resp[n:], norm_p, norm_r[:n], norm_r[n:])


def _empty_flags(ids: np.ndarray, c: np.ndarray, r: np.ndarray) -> pd.DataFrame:
    hit = np.flatnonzero(c | r)
    detail = ["chosen and rejected are empty" if c[i] and r[i] else "chosen is empty" if c[i]
              else "rejected is empty" for i in hit]
    return make_flags(ids[hit], "empty_response", 1.0, detail)


def _identical_flags(ids: np.ndarray, codes: _Codes) -> pd.DataFrame:
    hit = np.flatnonzero(codes.norm_chosen == codes.norm_rejected)
    exact = codes.chosen[hit] == codes.rejected[hit]
    detail = ["chosen and rejected are identical" if e
              else "chosen and rejected are identical after normalising case, whitespace and Unicode"
              for e in exact]
    return make_flags(ids[hit], "identical_responses", np.where(exact, 1.0, 0.9), detail)


def near_identical_similarity(a: Sequence[str], b: Sequence[str], cutoff: float = 0.0) -> np.ndarray:
    """Normalised Levenshtein similarity ``1 - distance / max(len)`` of ``a[i]`` and ``b[i]`` (1 for two
    empty texts), vectorised with :func:`rapidfuzz.process.cpdist`.

    Values below ``cutoff`` come back as 0. Pairs whose length ratio is already below ``cutoff`` (the
    distance is at least the length difference) are not compared at all, which makes a high cutoff
    fast on millions of pairs.
    """
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist

    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    la = np.fromiter(map(len, a), dtype=np.int64, count=len(a))
    lb = np.fromiter(map(len, b), dtype=np.int64, count=len(b))
    longer = np.maximum(la, lb)
    possible = np.minimum(la, lb) >= cutoff * longer
    out = np.zeros(len(a), dtype=np.float64)
    idx = np.flatnonzero(possible)
    if len(idx):
        out[idx] = cpdist(list(a[idx]), list(b[idx]), scorer=Levenshtein.normalized_similarity,
                          score_cutoff=cutoff, dtype=np.float64, workers=-1)
    return out


def _near_identical_flags(ids: np.ndarray, codes: _Codes, threshold: float) -> pd.DataFrame:
    differ = np.flatnonzero(codes.norm_chosen != codes.norm_rejected)  # equal ones are identical_responses
    sim = near_identical_similarity(codes.responses[codes.chosen[differ]],
                                    codes.responses[codes.rejected[differ]], cutoff=threshold)
    hit = sim >= threshold
    detail = [f"normalised edit similarity {v:.3f}: chosen and rejected differ in {1 - v:.1%} of the "
              "longer text"
              for v in sim[hit]]
    return make_flags(ids[differ[hit]], "near_identical", sim[hit], detail)


def _duplicate_flags(ids: np.ndarray, tie: np.ndarray, codes: _Codes) -> list[pd.DataFrame]:
    """duplicate_pair and contradictory_duplicate flags, across distinct pair ids."""
    group, orient = _pair_keys(codes.norm_prompt, codes.norm_chosen, codes.norm_rejected, tie)
    e_group, e_orient = _pair_keys(codes.prompt, codes.chosen, codes.rejected, tie)
    pos = np.arange(len(group))
    every = np.ones(len(group), dtype=bool)
    first_in_group = _first_where(group, every)
    first_same = _first_where(group * 3 + orient, every)
    is_pref = orient != LABEL_TIE
    first_a = _first_where(group, orient == LABEL_A)
    first_b = _first_where(group, orient == LABEL_B)
    contradicted = is_pref & (first_a >= 0) & (first_b >= 0)

    # A duplicate repeats an earlier pair with the same label, or with a tie on either side;
    # the first pair to state the opposite preference is a contradiction, not a duplicate.
    new_opposite = contradicted & (first_same == pos)
    dup = (first_in_group != pos) & ~new_opposite
    # Name an earlier exact twin when there is one (same label, or a tie on either side).
    e_same = _first_where(e_group * 3 + e_orient, every)
    e_ref = np.where(e_same != pos, e_same, _first_where(e_group, every))
    exact = (e_ref != pos) & ((e_orient[e_ref] == e_orient) | (e_orient[e_ref] == LABEL_TIE)
                              | (e_orient == LABEL_TIE))
    ref = np.where(exact, e_ref, np.where(first_same != pos, first_same, first_in_group))
    d = np.flatnonzero(dup)
    dup_detail = [("exact duplicate" if exact[i]
                   else "duplicate after normalising case, whitespace and Unicode")
                  + f" of pair {ids[ref[i]]}"
                  + ("" if orient[ref[i]] == orient[i] else " (one of the two is labelled a tie)") for i in d]
    dup_flags = make_flags(ids[d], "duplicate_pair", np.where(exact[d], 1.0, 0.9), dup_detail)

    # For each contradicted pair, name the first pair of its group with the other preference.
    c = np.flatnonzero(contradicted)
    other = np.where(orient[c] == LABEL_A, first_b[c], first_a[c])
    con_flags = make_flags(ids[c], "contradictory_duplicate", 1.0,
                           [f"same prompt and responses with the opposite preference in pair {ids[o]}"
                            for o in other])
    return [dup_flags, con_flags]


def _pair_keys(prompt: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
               tie: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group id of (prompt, {response, response}) ignoring response order, and the orientation
    of each pair's label within its group: LABEL_A if the preferred response has the smaller
    code of the two, LABEL_B if the larger, LABEL_TIE for ties and for pairs whose two responses
    are equal. Inputs are text codes."""
    lo, hi = np.minimum(chosen, rejected), np.maximum(chosen, rejected)
    width = int(hi.max(initial=0)) + 1  # codes are below width, so the keys below are unique
    group = pd.factorize(pd.factorize(prompt * width + lo)[0] * width + hi)[0]
    orient = np.where(tie | (chosen == rejected), LABEL_TIE, np.where(chosen == lo, LABEL_A, LABEL_B))
    return group, orient


def _first_where(group: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the position of the first row of its group where ``mask`` holds (-1 if none).
    ``group`` holds codes 0, 1, ..."""
    never = np.iinfo(np.int64).max
    rows = np.flatnonzero(mask)
    first = np.full(int(group.max(initial=-1)) + 1, never, dtype=np.int64)
    np.minimum.at(first, group[rows], rows)
    first = first[group]
    return np.where(first == never, -1, first)


def _truncation_flags(ids: np.ndarray, codes: _Codes, min_words: int,
                      min_last_line_words: int) -> pd.DataFrame:
    sign = truncation_sign(codes.responses, min_words=min_words,
                           min_last_line_words=min_last_line_words).to_numpy(dtype=object)
    frames = []
    for side, code in (("chosen", codes.chosen), ("rejected", codes.rejected)):
        hit = np.flatnonzero(sign[code] != "")
        detail = [f"{side} {sign[c]}: ...{codes.responses[c].rstrip()[-_EXCERPT:]!r}" for c in code[hit]]
        frames.append(make_flags(ids[hit], "truncated", [_TRUNCATION_SCORE[sign[c]] for c in code[hit]],
                                 detail))
    return _one_per_pair(frames)


def _length_flags(ids: np.ndarray, codes: _Codes, loglen: np.ndarray, empty: np.ndarray, length_z: float,
                  result: AnalyzerResult) -> pd.DataFrame:
    """Robust z of log length, pooled over every non-empty chosen and rejected response."""
    pooled = np.concatenate([loglen[codes.chosen][~empty[codes.chosen]],
                             loglen[codes.rejected][~empty[codes.rejected]]])
    if pooled.size < _MIN_LENGTH_SAMPLE:
        result.notes.append(f"Only {pooled.size} non-empty responses; length outliers need at least "
                            f"{_MIN_LENGTH_SAMPLE} for a stable median and MAD and were not computed.")
        return make_flags([], "length_outlier")
    med = float(np.median(pooled))
    mad = float(np.median(np.abs(pooled - med)))
    if mad == 0.0:
        result.notes.append("More than half of the responses have the same length; length outliers "
                            "were not computed (median absolute deviation is 0).")
        return make_flags([], "length_outlier")
    typical = int(round(10 ** med - 1))
    frames = []
    for side, code in (("chosen", codes.chosen), ("rejected", codes.rejected)):
        z = _MAD_TO_SD * (loglen[code] - med) / mad
        hit = np.flatnonzero((np.abs(z) > length_z) & ~empty[code])
        detail = [f"{side} is {len(codes.responses[c]):,} characters (robust z {zz:+.1f}; "
                  f"median response {typical:,})" for c, zz in zip(code[hit], z[hit], strict=True)]
        frames.append(make_flags(ids[hit], "length_outlier", np.abs(z[hit]), detail))
    lo_chars, hi_chars = (int(round(10 ** (med + s * length_z * mad / _MAD_TO_SD) - 1)) for s in (-1, 1))
    result.add_figure("length_outlier_bounds", Values({"min_chars": lo_chars, "max_chars": hi_chars,
                                                       "median_chars": typical}))
    return _one_per_pair(frames)


def _encoding_flags(ids: np.ndarray, codes: _Codes) -> pd.DataFrame:
    prompt_damage = encoding_damage(codes.prompts).to_numpy(dtype=object)
    response_damage = encoding_damage(codes.responses).to_numpy(dtype=object)
    frames = []
    for field, damage, code in (("prompt", prompt_damage, codes.prompt),
                                ("chosen", response_damage, codes.chosen),
                                ("rejected", response_damage, codes.rejected)):
        hit = np.flatnonzero(damage[code] != "")
        frames.append(make_flags(ids[hit], "encoding_damage", 1.0,
                                 [f"{field}: {damage[c]}" for c in code[hit]]))
    return _one_per_pair(frames)
def _load_flags(table: pd.DataFrame) -> pd.DataFrame:
    if "load_flags" not in table.columns:
        return make_flags([], "load_flag")
    codes = table[["pair_id", "load_flags"]].dropna()
    codes = codes[codes["load_flags"].to_numpy(dtype=object) != ""]  # "" holds no code
    codes = codes.assign(reason=codes["load_flags"].astype(str).str.split(";")).explode("reason")
    codes["reason"] = codes["reason"].str.strip()
    codes = codes[codes["reason"] != ""].drop_duplicates(["pair_id", "reason"])
    detail = codes["reason"].map(lambda r: LOAD_FLAG_DETAILS.get(r, f"loader marked the row '{r}'"))
    return make_flags(codes["pair_id"].astype(str), codes["reason"].to_numpy(dtype=object), 1.0,
                      detail.to_numpy(dtype=object))


def _one_per_pair(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Merge per-side flags of one reason: one row per pair, the worst score, details joined."""
    flags = concat_flags(frames)
    if flags.empty:
        return flags
    flags = flags.sort_values("score", ascending=False, kind="mergesort")
    return (flags.groupby("pair_id", sort=False)
            .agg(reason=("reason", "first"), score=("score", "max"), detail=("detail", "; ".join))
            .reset_index())


def _length_histogram(lc: np.ndarray, lr: np.ndarray) -> Histogram:
    top = max(float(np.max(lc)), float(np.max(lr)), 1.0)
    edges = np.linspace(0.0, np.ceil(top * 10) / 10, _N_HIST_BINS + 1)
    return Histogram(edges=edges.round(4), xlabel="log10(1 + characters)",
                     counts={"chosen": np.histogram(lc, edges)[0], "rejected": np.histogram(lr, edges)[0]})


def _first_positions(codes: np.ndarray) -> np.ndarray:
    """Position of the first row of each code (codes numbered in order of first appearance)."""
    first = np.full(int(codes.max(initial=-1)) + 1, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def _repeated_prompts(codes: _Codes, first_of_prompt: np.ndarray) -> pd.DataFrame:
    """The most repeated prompts (normalised) with their number of pairs, most repeated first."""
    counts = np.bincount(codes.norm_prompt)
    top = np.argsort(-counts, kind="stable")[:_N_REPEATED_PROMPTS]
    top = top[counts[top] > 1]
    return pd.DataFrame({"prompt": [codes.prompts[codes.prompt[i]][:200] for i in first_of_prompt[top]],
                         "n_pairs": counts[top].astype(int)})
