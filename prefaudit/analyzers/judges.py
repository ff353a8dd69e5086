"""Judges and presentation order: position bias, swap consistency, length bias, generator wins.

``analyze_judges(table)`` reads every judgement, *including* an annotator's repeated judgement
of the same comparison (``repeat`` rows, which every other analyzer leaves out), and reports
per judge (annotator; ``"_single"`` when unnamed):

- how often the response *shown first* wins its non-tie judgements (``chosen_shown_first``),
  with a Wilson interval and a two-sided binomial test against 0.5;
- swap consistency: where the judge judged the same comparison in both orders, the share of
  those comparisons given the same verdict both times (the same winning text, or a tie twice);
- the tie rate, and how often the longer response (in characters) wins (length bias);
- per generator, when the data names the model behind each response (``chosen_model``,
  ``rejected_model``): how often each model's response is chosen, overall and per judge.

A first-position share far from 0.5 has two readings: the judge favours a position, or the
file always puts one system first (then it is a generator effect; the generator table shows
which). Either way a policy trained on these labels learns something other than quality.
Nothing here depends on which response the sort calls "A": only on the order shown and the
texts themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prefaudit.errors import ConfigError
from prefaudit.figures import Bars
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, empty_flags, make_flags
from prefaudit.schema import MODEL_COLUMNS, REPEAT_COLUMN, has_order, shown_first
from prefaudit.stats.length_stats import binomial_p, wilson_interval

NO_INFO_NOTE = ("Judges not analysed: the data names no annotator and does not record which response "
                "was shown first.")
METRICS = declare(
    "judges", "Judges and presentation order",
    MetricSpec("first_position_share",
               "share of non-tie judgements (all judges pooled, repeats included) won by the response shown "
               "first; 0.5 = no position effect; Wilson interval",
               low="first_position_share_low", high="first_position_share_high"),
    MetricSpec("max_position_bias",
               "largest |first-position share - 0.5| among judges with at least min_judgements non-tie "
               "judgements of known order"),
    MetricSpec("swap_consistency",
               "share of comparisons judged by the same judge in both orders that got the same verdict both "
               "times (1 = order never changes the verdict); Wilson interval",
               low="swap_consistency_low", high="swap_consistency_high"),
    MetricSpec("top_generator_chosen_share",
               "share of non-tie judgements whose chosen response was written by the most often chosen model "
               "(near 1: the data teaches that model's style; the model is named in the notes)"),
)


def analyze_judges(table: pd.DataFrame, *, min_judgements: int = 30,
                   bias_margin: float = 0.1) -> AnalyzerResult:
    """Position bias, swap consistency, tie rate, length bias and generator win rates per judge.

    Parameters
    ----------
    table:
        A canonical judgement table (:mod:`prefaudit.schema`), repeats kept.
    min_judgements:
        A judge needs this many non-tie judgements of known order to count towards
        ``max_position_bias`` and to have its judgements flagged ``position_bias``.
    bias_margin:
        A first-position share is called *biased* when its 95% interval lies wholly outside
        ``[0.5 - bias_margin, 0.5 + bias_margin]`` (the bundled policy's warning band): a
        judge must be biased to have judgements flagged, and the pooled share to get a note.

    Returns
    -------
    AnalyzerResult
        Metrics ``first_position_share`` (with a Wilson interval), ``max_position_bias``,
        ``swap_consistency`` (with a Wilson interval) and ``top_generator_chosen_share``;
        tables ``judges`` (one row per judge), ``generators`` and ``judge_generator_win_rate``
        when models are known; ``position_bias`` pair flags (see :func:`_position_flags`).
    """
    if min_judgements < 1 or not 0 <= bias_margin < 0.5:
        raise ConfigError(f"judges needs min_judgements >= 1 and 0 <= bias_margin < 0.5 "
                          f"(got {min_judgements}, {bias_margin})")
    result = AnalyzerResult(analyzer="judges",
                            params={"min_judgements": min_judgements, "bias_margin": bias_margin})
    frame = _judgements(table)
    named = bool(table["annotator"].notna().any())
    if not named and not has_order(table):
        for spec in METRICS:
            result.add_metric(spec.name, None)
        result.notes.append(NO_INFO_NOTE)
        return result
    per_judge = _per_judge(frame)
    result.tables["judges"] = per_judge
    _add_position(result, frame, per_judge, min_judgements, bias_margin)
    _add_swaps(result, frame)
    _add_generators(result, frame)
    result.add_figure("length_bias", _interval_figure(per_judge, "longer_share", "n_length_compared"))
    return result


def _judgements(table: pd.DataFrame) -> pd.DataFrame:
    """One row per judgement: judge, pair, verdict, which text was shown first, lengths."""
    order = shown_first(table)
    chosen, rejected = table["chosen"].to_numpy(dtype=object), table["rejected"].to_numpy(dtype=object)
    known = order.notna().to_numpy()
    first = order.fillna(False).to_numpy(dtype=bool)
    tie = table["tie"].to_numpy(dtype=bool)
    len_c = np.fromiter((len(t) for t in chosen), dtype=np.int64, count=len(chosen))
    len_r = np.fromiter((len(t) for t in rejected), dtype=np.int64, count=len(rejected))
    models = {c: (table[c].astype("string").to_numpy(dtype=object, na_value=None) if c in table.columns
                  else np.full(len(table), None, dtype=object)) for c in MODEL_COLUMNS}
    return pd.DataFrame({
        "judge": table["annotator"].astype("string").fillna("_single").to_numpy(dtype=object),
        "pair_id": table["pair_id"].to_numpy(dtype=object),
        "tie": tie,
        "order_known": known,
        "first_won": known & ~tie & first,
        "first_text": np.where(first, chosen, rejected),
        "verdict": np.where(tie, None, chosen),
        "length_compared": ~tie & (len_c != len_r),
        "longer_won": ~tie & (len_c > len_r),
        "repeat": table[REPEAT_COLUMN].to_numpy(dtype=bool) if REPEAT_COLUMN in table.columns
        else np.zeros(len(table), dtype=bool),
        **models,
    })


def _per_judge(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per judge: counts, tie rate, first-position share and length bias with intervals."""
    rows = []
    for judge, g in frame.groupby("judge", sort=True):
        positional = g[g["order_known"] & ~g["tie"]]
        k, n = int(positional["first_won"].sum()), len(positional)
        lk, ln = int(g["longer_won"].sum()), int(g["length_compared"].sum())
        f_low, f_high = wilson_interval(k, n)
        l_low, l_high = wilson_interval(lk, ln)
        rows.append({
            "judge": judge, "n_judgements": len(g), "n_repeats": int(g["repeat"].sum()),
            "tie_rate": float(g["tie"].mean()),
            "n_positional": n, "first_position_share": k / n if n else np.nan,
            "first_low": f_low, "first_high": f_high, "first_binomial_p": binomial_p(k, n),
            "n_length_compared": ln, "longer_share": lk / ln if ln else np.nan,
            "longer_low": l_low, "longer_high": l_high,
        })
    return pd.DataFrame(rows).set_index("judge")


def _biased(low: float | pd.Series, high: float | pd.Series, margin: float) -> bool | pd.Series:
    """The interval [low, high] lies wholly outside [0.5 - margin, 0.5 + margin]."""
    return (low > 0.5 + margin) | (high < 0.5 - margin)


def _add_position(result: AnalyzerResult, frame: pd.DataFrame, per_judge: pd.DataFrame,
                  min_judgements: int, margin: float) -> None:
    positional = frame["order_known"] & ~frame["tie"]
    k, n = int(frame["first_won"].sum()), int(positional.sum())
    if not n:
        result.add_metric("first_position_share", None)
        result.add_metric("max_position_bias", None)
        result.notes.append("first_position_share is not measured: no non-tie judgement records which "
                            "response was shown first.")
        return
    low, high = wilson_interval(k, n)
    share = k / n
    result.add_metric("first_position_share", share, low=low, high=high)
    enough = per_judge[per_judge["n_positional"] >= min_judgements]
    bias = (enough["first_position_share"] - 0.5).abs()
    result.add_metric("max_position_bias", float(bias.max()) if len(bias) else None)
    if not len(bias):
        result.notes.append(f"max_position_bias is not measured: no judge has {min_judgements} non-tie "
                            "judgements of known order.")
    shown = per_judge[per_judge["n_positional"] > 0]
    result.add_figure("first_position_share", _interval_figure(shown, "first_position_share", "n_positional",
                                                               prefix="first"))
    if _biased(low, high, margin):
        side = "first" if share > 0.5 else "second"
        result.notes.append(
            f"The response shown {side} wins {max(share, 1 - share):.1%} of {n} non-tie judgements "
            f"(95% interval of the first-position share [{low:.3f}, {high:.3f}]). Either the judges favour "
            "that position, or the file tends to put one system first (then it is a generator effect: "
            "see the generator table); either way DPO on these labels learns something other than quality.")
    result.pair_flags = _position_flags(frame, per_judge, min_judgements, margin)


def _interval_figure(per_judge: pd.DataFrame, column: str, n_column: str, prefix: str = "longer") -> Bars:
    """One bar per judge with its interval; the line at 0.5 = no effect."""
    return Bars(labels=[str(j) for j in per_judge.index], values={"share": per_judge[column]},
                low=per_judge[f"{prefix}_low"], high=per_judge[f"{prefix}_high"], n=per_judge[n_column],
                reference=0.5)


def _position_flags(frame: pd.DataFrame, per_judge: pd.DataFrame, min_judgements: int,
                    margin: float) -> pd.DataFrame:
    """Flag a judgement only where position bias is a likely explanation of it: its judge has
    at least ``min_judgements`` non-tie judgements of known order and is biased (its interval
    wholly outside ``0.5 +- margin``), it chose the position that judge favours, and another judgement of
    the same comparison (another judge, or this judge in the other order) gave a different verdict.
    Score = the judge's |first-position share - 0.5|. One flag per pair (its highest score)."""
    biased = per_judge[(per_judge["n_positional"] >= min_judgements)
                       & _biased(per_judge["first_low"], per_judge["first_high"], margin)]
    if biased.empty:
        return empty_flags()
    favours_first = frame["judge"].map(biased["first_position_share"] > 0.5)
    followed = frame["order_known"] & ~frame["tie"] & favours_first.notna() & (
        frame["first_won"] == favours_first.fillna(False).astype(bool))
    verdicts = frame["verdict"].fillna("\x00tie")
    n_verdicts = verdicts.groupby(frame["pair_id"]).transform("nunique")
    hits = frame[followed & (n_verdicts > 1)]
    if hits.empty:
        return empty_flags()
    share = hits["judge"].map(biased["first_position_share"])
    hits = hits.assign(score=(share - 0.5).abs(), share=share)
    hits = hits.sort_values("score", ascending=False, kind="mergesort").drop_duplicates("pair_id")
    detail = [f"judge {j} picks the response shown first in {s:.1%} of its non-tie judgements; here it "
              f"picked the {'first' if s > 0.5 else 'second'}-shown response while another judgement of this "
              "comparison disagrees" for j, s in zip(hits["judge"], hits["share"], strict=True)]
    return make_flags(hits["pair_id"].to_numpy(), "position_bias", hits["score"].to_numpy(), detail)


def _add_swaps(result: AnalyzerResult, frame: pd.DataFrame) -> None:
    """Swap consistency over (judge, comparison) groups judged with each response shown first:
    the first judgement in each order is compared (same winning text, or a tie both times)."""
    known = frame[frame["order_known"]]
    firsts = known.drop_duplicates(["judge", "pair_id", "first_text"])
    counts = firsts.groupby(["judge", "pair_id"], sort=False)["first_text"].transform("size")
    both = firsts[counts >= 2]
    if both.empty:
        result.add_metric("swap_consistency", None)
        result.notes.append("swap_consistency is not measured: no judge judged the same comparison with each "
                            "response shown first.")
        return
    verdicts = both["verdict"].fillna("\x00tie")
    same = verdicts.groupby([both["judge"], both["pair_id"]], sort=False).nunique() == 1
    per_judge = same.groupby(level=0).agg(["sum", "size"])
    k, n = int(same.sum()), int(same.size)
    low, high = wilson_interval(k, n)
    result.add_metric("swap_consistency", k / n, low=low, high=high)
    table = result.tables["judges"]
    table["n_swapped"] = per_judge["size"].reindex(table.index).fillna(0).astype(int)
    table["swap_consistency"] = (per_judge["sum"] / per_judge["size"]).reindex(table.index)


def _add_generators(result: AnalyzerResult, frame: pd.DataFrame) -> None:
    """Win rates per generator (non-tie judgements), overall and per judge, when models are known."""
    c_col, r_col = MODEL_COLUMNS
    decided = frame[~frame["tie"] & frame[c_col].notna() & frame[r_col].notna()]
    if decided.empty:
        result.add_metric("top_generator_chosen_share", None)
        result.notes.append("Generator win rates are not measured: the data does not name the model behind "
                            "each response.")
        return
    wins = decided[c_col].value_counts()
    appearances = pd.concat([decided[c_col], decided[r_col]]).value_counts()
    wins = wins.reindex(appearances.index, fill_value=0)
    ci = [wilson_interval(int(w), int(a)) for w, a in zip(wins, appearances, strict=True)]
    gen = pd.DataFrame({"n_judgements": appearances, "n_chosen": wins, "win_rate": wins / appearances,
                        "low": [c[0] for c in ci], "high": [c[1] for c in ci],
                        "chosen_share": wins / len(decided)})
    gen.index.name = "model"
    gen = gen.sort_values(["win_rate", "n_judgements"], ascending=False, kind="mergesort")
    result.tables["generators"] = gen
    top = gen["chosen_share"].idxmax()
    result.add_metric("top_generator_chosen_share", float(gen.loc[top, "chosen_share"]))
    result.notes.append(f"The most often chosen model is {top}: its responses are chosen in "
                        f"{gen.loc[top, 'chosen_share']:.1%} of non-tie judgements.")
    long = pd.concat([
        pd.DataFrame({"judge": decided["judge"], "model": decided[c_col], "won": 1}),
        pd.DataFrame({"judge": decided["judge"], "model": decided[r_col], "won": 0}),
    ])
    result.tables["judge_generator_win_rate"] = long.pivot_table(index="judge", columns="model", values="won",
                                                                 aggfunc="mean").reindex(columns=gen.index)
    result.add_figure("generator_win_rate", Bars(
        labels=[str(m) for m in gen.index], values={"win_rate": gen["win_rate"]}, low=gen["low"],
        high=gen["high"], n=gen["n_judgements"], reference=0.5))
