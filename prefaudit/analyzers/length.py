"""Length and verbosity bias: how much does "the longer answer wins" explain the labels?

Works on pairs (multi-annotator tables are collapsed by majority with
:func:`prefaudit.schema.to_pairs`); tied pairs are excluded from every bias measure and
counted. Lengths are in characters (the bias measures), words, and — given a tokenizer —
tokens exactly as TRL's ``DPOTrainer`` encodes the pair (:mod:`prefaudit.scoring.encoding`,
the encoding the margins pass and the bundled training use), whose statistics show how much of
the data a DPO ``max_length`` budget would truncate.

Bias measures over the non-tied pairs:

- the share whose chosen response is strictly longer, with a Wilson interval, and an exact
  binomial (sign) test against 0.5 over the pairs of unequal length;
- accuracy and ROC AUC of a predictor that only looks at length, on pairs shown in a seeded
  random order (response A is the chosen one half the time);
- a logistic regression of "A is chosen" on log2(len A / len B), with a 95% interval of the
  slope;
- the same share by bins of length ratio and by prompt cluster;
- what seeded length-balanced resampling (:mod:`prefaudit.stats.length_balance`) would
  leave of the bias, and how many pairs it costs.

Flags the pairs most likely to teach "be longer": chosen much longer and the label weakly
supported (low agreement posterior, split vote, or low source strength).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from prefaudit.errors import ConfigError
from prefaudit.figures import Bars, Histogram, Lines
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, concat_flags, make_flags
from prefaudit.schema import is_conversational as schema_conversational
from prefaudit.schema import to_pairs, validate
from prefaudit.scoring.encoding import BATCH_SIZE, is_conversational, load_tokenizer, split_trl, trl_sequences
from prefaudit.stats.length_balance import RATIO_EDGES, balanced_keep, log_length_ratio, ratio_bin
from prefaudit.stats.length_stats import binomial_p, logistic_fit, rank_auc, wilson_interval

FLAG_REASON = "longer_chosen_low_support"
SHARE_LONGER = ("share of non-tied pairs whose chosen response has strictly more characters (equal-length "
                "pairs count as not longer); 95% Wilson interval")
LENGTH_ACCURACY = ("accuracy of 'the longer response is chosen' on pairs in random A/B order (equal lengths "
                   "count as half right); 0.5 = length carries no signal")
LENGTH_AUC = ("ROC AUC of log2(len A / len B) as a predictor of 'A is chosen', pairs in seeded random A/B "
              "order; 0.5 = no length signal, 1 = the longer always wins")
LOGIT_SLOPE = ("logistic regression of 'A is chosen' on log2(len A / len B): change in log-odds per doubling "
               "of relative length; 95% Wald interval")

BALANCED = "after length-balanced resampling, "
METRICS = declare(
    "length", "Length bias",
    MetricSpec("n_pairs", "number of comparisons analysed (multi-annotator pairs collapsed)"),
    MetricSpec("n_ties_excluded",
               "pairs whose label is a tie (or a level vote), left out of every bias measure"),
    MetricSpec("n_equal_length", "non-tied pairs whose two responses have the same number of characters"),
    MetricSpec("chosen_chars_median", "median length of the chosen responses, in characters"),
    MetricSpec("chosen_words_mean", "mean length of the chosen responses, in whitespace-separated words"),
    MetricSpec("rejected_chars_median", "median length of the rejected responses, in characters"),
    MetricSpec("rejected_words_mean", "mean length of the rejected responses, in whitespace-separated words"),
    MetricSpec("mean_log_length_ratio",
               "mean log2(chosen chars / rejected chars) over non-tied pairs; 0 = no length lean, "
               "+1 = chosen twice as long on average (geometric)"),
    MetricSpec("share_longer_chosen", SHARE_LONGER,
               low="share_longer_chosen_low", high="share_longer_chosen_high"),
    MetricSpec("share_longer_chosen_unequal",
               "share of non-tied pairs of unequal length whose chosen response is the longer; 95% Wilson "
               "interval", low="share_longer_chosen_unequal_low", high="share_longer_chosen_unequal_high"),
    MetricSpec("share_longer_chosen_tokens",
               "share of non-tied pairs whose chosen response has strictly more tokens"),
    MetricSpec("share_identical_after_truncation",
               "share of pairs whose different chosen and rejected become the same token sequence once "
               "TRL's prompt + completion ids are cut to max_length (keep_start): they give DPO no gradient"),
    MetricSpec("binomial_p",
               "two-sided exact binomial (sign) test that the longer response is chosen half the time, over "
               "non-tied pairs of unequal length"),
    MetricSpec("length_biased",
               "1 if the longer response wins significantly more than half the time (binomial_p < alpha and "
               "share above 0.5), else 0"),
    MetricSpec("length_accuracy", LENGTH_ACCURACY),
    MetricSpec("length_auc", LENGTH_AUC),
    MetricSpec("logit_slope", LOGIT_SLOPE, low="logit_slope_low", high="logit_slope_high"),
    MetricSpec("strength_spearman",
               "Spearman correlation of log2(chosen/rejected chars) with the source's preference strength; "
               "> 0 means longer chosen answers win by more"),
    MetricSpec("strength_spearman_p", "p-value of strength_spearman (no correlation)"),
    MetricSpec("balanced_pairs_dropped",
               "non-tied pairs that length-balanced resampling drops so the longer response wins exactly "
               "half the time in every length-ratio bin"),
    MetricSpec("balanced_share_dropped", "share of the non-tied pairs that length-balanced resampling drops"),
    MetricSpec("balanced_share_longer_chosen", BALANCED + SHARE_LONGER,
               low="balanced_share_longer_chosen_low", high="balanced_share_longer_chosen_high"),
    MetricSpec("balanced_length_accuracy", BALANCED + LENGTH_ACCURACY),
    MetricSpec("balanced_length_auc", BALANCED + LENGTH_AUC),
    MetricSpec("balanced_logit_slope", BALANCED + LOGIT_SLOPE,
               low="balanced_logit_slope_low", high="balanced_logit_slope_high"),
    MetricSpec("n_clusters_biased",
               "prompt clusters where the longer response wins significantly more than half the time "
               "(binomial test, Bonferroni over the clusters, at alpha)"),
    MetricSpec("max_cluster_share_longer_chosen", "highest chosen-longer share among prompt clusters"),
    MetricSpec("share_chosen_much_longer",
               "share of non-tied pairs whose chosen response is at least much_longer times as long "
               "(characters + 1) as the rejected"),
    MetricSpec("n_longer_chosen_low_support",
               "pairs whose chosen response is at least much_longer times as long and whose label is weakly "
               "supported (support below low_support, or strength percentile at most low_strength_quantile; "
               "the source is in params)"),
    MetricSpec("share_over_budget",
               "share of pairs whose prompt + longer completion, as TRL encodes them, exceeds max_length "
               "tokens, so DPO training would truncate it"),
    MetricSpec("share_prompt_over_budget",
               "share of pairs whose prompt alone fills max_length tokens (TRL drops them: no response token "
               "would be trained on)"),
    MetricSpec("prompt_tokens_mean",
               "mean number of prompt tokens as TRL encodes them (the tokenizer's special tokens or the chat "
               "template's generation prompt included)"),
    MetricSpec("prompt_tokens_p50", "median number of prompt tokens"),
    MetricSpec("prompt_tokens_p95", "95th percentile of prompt tokens"),
    MetricSpec("prompt_tokens_max", "largest number of prompt tokens"),
    MetricSpec("chosen_tokens_mean",
               "mean number of chosen completion tokens as TRL encodes them (EOS included for text data)"),
    MetricSpec("chosen_tokens_p50", "median number of chosen tokens"),
    MetricSpec("chosen_tokens_p95", "95th percentile of chosen tokens"),
    MetricSpec("chosen_tokens_max", "largest number of chosen tokens"),
    MetricSpec("rejected_tokens_mean",
               "mean number of rejected completion tokens as TRL encodes them (EOS included for text data)"),
    MetricSpec("rejected_tokens_p50", "median number of rejected tokens"),
    MetricSpec("rejected_tokens_p95", "95th percentile of rejected tokens"),
    MetricSpec("rejected_tokens_max", "largest number of rejected tokens"),
)
#: Token metrics per text: mean, median, 95th percentile and maximum.
_TOKEN_METRICS: dict[str, tuple[str, str, str, str]] = {
    "prompt": ("prompt_tokens_mean", "prompt_tokens_p50", "prompt_tokens_p95", "prompt_tokens_max"),
    "chosen": ("chosen_tokens_mean", "chosen_tokens_p50", "chosen_tokens_p95", "chosen_tokens_max"),
    "rejected": ("rejected_tokens_mean", "rejected_tokens_p50", "rejected_tokens_p95", "rejected_tokens_max"),
}


def analyze_length(table: pd.DataFrame, *, tokenizer: str | Path | Any = None, max_length: int = 512,
                   support: pd.Series | None = None, clusters: pd.Series | None = None, seed: int = 0,
                   alpha: float = 0.05, much_longer: float = 2.0, low_support: float = 0.75,
                   low_strength_quantile: float = 0.25, batch_size: int = BATCH_SIZE,
                   pairs: pd.DataFrame | None = None) -> AnalyzerResult:
    """Measure length bias in a canonical pair table.

    Parameters
    ----------
    table:
        A canonical pair table.
    pairs:
        ``to_pairs(table)`` when the caller has it (:func:`prefaudit.audit.audit` collapses the
        table once for all analyzers); None: collapsed here.
    tokenizer:
        A local tokenizer path or a loaded ``transformers`` tokenizer; adds token statistics
        of TRL's encoding (chat-templated for conversational data). None: characters and
        words only.
    max_length:
        Token budget of one DPO sequence (TRL's ``max_length``: prompt + completion ids).
    support:
        Per ``pair_id``, the probability that the final label is right (the agreement
        analyzer's consensus posterior). Without it: the vote share of multi-annotator pairs,
        else the percentile of the source ``strength``, else unknown.
    clusters:
        Per ``pair_id``, a prompt cluster id (from the coverage analyzer).
    seed:
        Seeds the random A/B order of the length-only predictor and the balanced resampling.
    alpha:
        Significance level of the binomial test that calls the data length-biased.
    much_longer:
        Chosen/rejected character ratio from which a weakly supported pair is flagged.
    low_support:
        Support (posterior or vote share) below which a label counts as weakly supported.
    low_strength_quantile:
        With strength as support: pairs in this lowest share of strengths count as weak.
    batch_size:
        Pairs per tokenizer call.
    """
    if max_length <= 0:
        raise ConfigError(f"length: max_length must be a positive number of tokens, got {max_length}")
    if much_longer <= 1:
        raise ConfigError(f"length: much_longer must be a ratio above 1, got {much_longer}")
    for name, s in (("support", support), ("clusters", clusters)):
        if s is not None and not isinstance(s, pd.Series):
            raise ConfigError(f"length: {name} must be a pandas Series indexed by pair_id, "
                              f"got {type(s).__name__}")
    pairs = to_pairs(validate(table)) if pairs is None else pairs
    res = AnalyzerResult(analyzer="length", params={
        "tokenizer": None if tokenizer is None else str(getattr(tokenizer, "name_or_path", tokenizer)),
        "max_length": max_length, "seed": seed, "alpha": alpha, "much_longer": much_longer,
        "low_support": low_support, "low_strength_quantile": low_strength_quantile,
        "ratio_bin_edges": list(RATIO_EDGES[:-1]) + ["inf"]})

    c_chars, r_chars = _chars(pairs["chosen"]), _chars(pairs["rejected"])
    tie = pairs["tie"].to_numpy(dtype=bool)
    lr = log_length_ratio(c_chars, r_chars)
    pair_data = pd.DataFrame({
        "chosen_chars": c_chars, "rejected_chars": r_chars,
        "chosen_words": _words(pairs["chosen"]), "rejected_words": _words(pairs["rejected"]),
        "log_length_ratio": lr, "chosen_longer": c_chars > r_chars, "tie": tie,
    }, index=pd.Index(pairs["pair_id"].to_numpy(dtype=object), name="pair_id", dtype=object))

    _size_metrics(res, pair_data)
    if tokenizer is not None:
        _token_metrics(res, pairs, load_tokenizer(tokenizer), max_length, batch_size, pair_data)
    live = ~tie
    if live.sum() == 0:
        res.notes.append("length: every pair is a tie, so no length bias can be measured." if len(pairs)
                         else "length: the table has no pairs.")
        res.pair_data = pair_data
        return res
    _bias_metrics(res, lr[live], seed, alpha)
    _strength_metric(res, pairs, lr, live)
    _bins(res, lr[live])
    _counterfactual(res, lr, tie, seed)
    if clusters is not None:
        _clusters(res, lr[live], clusters.reindex(pair_data.index[live]), alpha)
    _flags(res, pairs, pair_data, support, much_longer, low_support, low_strength_quantile)
    if tokenizer is not None:
        same = pair_data.index[pair_data["identical_after_truncation"].to_numpy(dtype=bool)]
        res.pair_flags = concat_flags([res.pair_flags, make_flags(
            same, "identical_after_truncation", 1.0,
            f"chosen and rejected are the same {max_length} tokens once truncated: no DPO gradient")])
    res.pair_data = pair_data
    return res


def _chars(texts: pd.Series) -> np.ndarray:
    """Characters per text (object column: no copy into Arrow strings, as ``.str`` would make)."""
    return np.fromiter(map(len, texts.to_numpy(dtype=object)), dtype=np.int64, count=len(texts))


def _words(texts: pd.Series) -> np.ndarray:
    """Words per text: runs of non-whitespace, as ``str.split()`` finds them (the same runs as the
    regex ``\\S+``; both use Unicode whitespace), 3-4x faster than a regex count."""
    return np.fromiter((len(t.split()) for t in texts.to_numpy(dtype=object)), dtype=np.int64,
                       count=len(texts))


def _size_metrics(res: AnalyzerResult, d: pd.DataFrame) -> None:
    res.add_metric("n_pairs", len(d))
    res.add_metric("n_ties_excluded", int(d["tie"].sum()))
    live = ~d["tie"].to_numpy(dtype=bool)  # a mask, not a copy of the frame
    res.add_metric("n_equal_length",
                   int((d["chosen_chars"].to_numpy()[live] == d["rejected_chars"].to_numpy()[live]).sum()))
    res.add_metric("chosen_chars_median", float(d["chosen_chars"].median()) if len(d) else None)
    res.add_metric("chosen_words_mean", float(d["chosen_words"].mean()) if len(d) else None)
    res.add_metric("rejected_chars_median", float(d["rejected_chars"].median()) if len(d) else None)
    res.add_metric("rejected_words_mean", float(d["rejected_words"].mean()) if len(d) else None)
    live_ratio = d["log_length_ratio"][live]
    res.add_metric("mean_log_length_ratio", float(live_ratio.mean()) if len(live_ratio) else None)


@dataclass(frozen=True)
class _Bias:
    """How far length alone explains the labels of some non-tied pairs."""

    share: float
    low: float
    high: float
    accuracy: float
    auc: float
    fit: Any


def _bias(lr: np.ndarray, seed: int) -> _Bias:
    """Share (Wilson interval), length-only predictor and logistic fit of non-tied log ratios ``lr``."""
    n = len(lr)
    k = int((lr > 0).sum())
    low, high = wilson_interval(k, n)
    # Random presentation order: A is the chosen response when not swapped.
    swap = np.random.default_rng(seed).random(n) < 0.5
    y = ~swap
    x = np.where(swap, -lr, lr)
    acc = float(np.mean(np.where(x == 0, 0.5, (x > 0) == y)))
    return _Bias(k / n, low, high, acc, rank_auc(y, x), logistic_fit(x, y))


def _bias_metrics(res: AnalyzerResult, lr: np.ndarray, seed: int, alpha: float) -> None:
    """The bias metrics of the non-tied pairs, their binomial test and the logistic curve."""
    b = _bias(lr, seed)
    k = int((lr > 0).sum())
    n_unequal = int((lr != 0).sum())
    res.add_metric("share_longer_chosen", b.share, low=b.low, high=b.high)
    ulow, uhigh = wilson_interval(k, n_unequal)
    res.add_metric("share_longer_chosen_unequal", k / n_unequal if n_unequal else None, low=ulow, high=uhigh)
    p = binomial_p(k, n_unequal)
    res.add_metric("binomial_p", p)
    biased = None if not np.isfinite(p) else float(p < alpha and k / n_unequal > 0.5)
    res.add_metric("length_biased", biased)
    if np.isfinite(p) and p < alpha and k / n_unequal < 0.5:
        res.notes.append(f"length: the shorter response is chosen significantly more often "
                         f"({1 - k / n_unequal:.1%} of {n_unequal} pairs of unequal length, binomial p = "
                         f"{p:.2g}); training on this data rewards brevity.")
    if biased:
        res.notes.append(f"length: the longer response is chosen in {k / n_unequal:.1%} of {n_unequal} "
                         f"pairs of unequal length (binomial p = {p:.2g}); training on this data rewards "
                         "length.")
    res.add_metric("length_accuracy", b.accuracy)
    res.add_metric("length_auc", b.auc)
    fit = b.fit
    res.add_metric("logit_slope", fit.slope if fit.converged else None, low=fit.slope_low,
                   high=fit.slope_high)
    if fit.converged:
        res.add_figure("logit_curve", _logit_curve(fit))
    else:
        res.notes.append("length: the logistic fit did not converge (length separates the labels "
                         "perfectly, or there is too little variation); logit_slope is not reported.")


def _logit_curve(fit: Any) -> Lines:
    grid = np.linspace(-4, 4, 33)
    p = 1 / (1 + np.exp(-(fit.intercept + fit.slope * grid)))
    return Lines(x=grid.round(4), ys={"p_chosen": p.round(6)}, xlabel="log2(len A / len B)",
                 ylabel="P(A is chosen)")


def _strength_metric(res: AnalyzerResult, pairs: pd.DataFrame, lr: np.ndarray, live: np.ndarray) -> None:
    strength = pairs["strength"].to_numpy(dtype=float)
    ok = live & np.isfinite(strength)
    if ok.sum() < 3 or np.ptp(strength[ok]) == 0 or np.ptp(lr[ok]) == 0:
        res.notes.append("length: the source gives no varying strength, so its correlation with the "
                         "length ratio is not measured.")
        return
    rho, p = stats.spearmanr(lr[ok], strength[ok])
    res.add_metric("strength_spearman", float(rho))
    res.add_metric("strength_spearman_p", float(p))


def _bins(res: AnalyzerResult, lr: np.ndarray) -> None:
    b = ratio_bin(lr)
    rows = []
    for i in range(len(RATIO_EDGES) - 1):
        in_bin = b == i
        n, k = int(in_bin.sum()), int((in_bin & (lr > 0)).sum())
        low, high = wilson_interval(k, n)
        hi = RATIO_EDGES[i + 1]
        rows.append({"ratio_from": RATIO_EDGES[i], "ratio_to": hi,
                     "label": f"{RATIO_EDGES[i]:g}-{hi:g}x" if np.isfinite(hi) else f">{RATIO_EDGES[i]:g}x",
                     "n_pairs": n, "share_longer_chosen": k / n if n else np.nan,
                     "low": low, "high": high})
    by_bin = pd.DataFrame(rows)
    res.tables["by_length_ratio"] = by_bin
    res.add_figure("bias_by_length_ratio", Bars(
        labels=by_bin["label"], values={"share_longer_chosen": by_bin["share_longer_chosen"].to_numpy()},
        low=by_bin["low"].to_numpy(), high=by_bin["high"].to_numpy(), n=by_bin["n_pairs"].to_numpy(),
        reference=0.5))
    edges = np.linspace(-4, 4, 33)
    counts, _ = np.histogram(np.clip(lr, -4, 4), bins=edges)
    res.add_figure("log_ratio_hist", Histogram(
        edges=edges, counts={"pairs": counts}, marks={"equal length": 0.0},
        xlabel="log2(chosen chars / rejected chars), clipped to [-4, 4]"))


def _counterfactual(res: AnalyzerResult, lr: np.ndarray, tie: np.ndarray, seed: int) -> None:
    keep = balanced_keep(lr, tie, seed=seed)
    live = ~tie
    dropped = int((~keep & live).sum())
    res.add_metric("balanced_pairs_dropped", dropped)
    res.add_metric("balanced_share_dropped", dropped / int(live.sum()))
    kept = lr[keep & live]
    if len(kept) == 0:
        res.notes.append("length: length-balanced resampling would drop every pair.")
        return
    b = _bias(kept, seed)
    res.add_metric("balanced_share_longer_chosen", b.share, low=b.low, high=b.high)
    res.add_metric("balanced_length_accuracy", b.accuracy)
    res.add_metric("balanced_length_auc", b.auc)
    res.add_metric("balanced_logit_slope", b.fit.slope if b.fit.converged else None,
                   low=b.fit.slope_low, high=b.fit.slope_high)


def _clusters(res: AnalyzerResult, lr: np.ndarray, cl: pd.Series, alpha: float) -> None:
    known = cl.notna().to_numpy()
    if not known.any():
        res.notes.append("length: no pair has a prompt cluster; the per-cluster breakdown is skipped.")
        return
    frame = pd.DataFrame({"cluster": cl.to_numpy()[known], "longer": lr[known] > 0,
                          "unequal": lr[known] != 0})
    g = frame.groupby("cluster", sort=True)
    out = pd.DataFrame({"n_pairs": g.size(), "n_longer_chosen": g["longer"].sum(),
                        "n_unequal": g["unequal"].sum()})
    m = len(out)
    out["share_longer_chosen"] = out["n_longer_chosen"] / out["n_pairs"]
    ci = [wilson_interval(int(k), int(n))
          for k, n in zip(out["n_longer_chosen"], out["n_pairs"], strict=True)]
    out["low"], out["high"] = [c[0] for c in ci], [c[1] for c in ci]
    out["binomial_p"] = [binomial_p(int(k), int(n)) for k, n in zip(out["n_longer_chosen"], out["n_unequal"],
                                                                    strict=True)]
    out["biased"] = ((np.minimum(out["binomial_p"] * m, 1.0) < alpha)
                     & (out["n_longer_chosen"] > out["n_unequal"] / 2))
    out = out.reset_index()
    res.tables["by_cluster"] = out
    res.add_figure("bias_by_cluster", Bars(
        labels=out["cluster"].astype(str),
        values={"share_longer_chosen": out["share_longer_chosen"].to_numpy()},
        low=out["low"].to_numpy(), high=out["high"].to_numpy(), n=out["n_pairs"].to_numpy(), reference=0.5))
    res.add_metric("n_clusters_biased", int(out["biased"].sum()))
    res.add_metric("max_cluster_share_longer_chosen", float(out["share_longer_chosen"].max()))


def _support(pairs: pd.DataFrame, ids: pd.Index, support: pd.Series | None, low_support: float,
             low_strength_quantile: float) -> tuple[np.ndarray, float, str] | None:
    """(support per pair in [0, 1], threshold below which it is low, where it came from) or None."""
    if support is not None:
        s = pd.to_numeric(support.set_axis(support.index.astype(str)), errors="coerce")
        return s.reindex(ids).to_numpy(dtype=float), low_support, "agreement posterior"
    if (pairs["n_judgements"] > 1).any():
        return pairs["vote_share"].to_numpy(dtype=float), low_support, "vote share"
    strength = pairs["strength"].where(~pairs["tie"])
    if strength.notna().sum() >= 3 and strength.nunique() > 1:
        return strength.rank(pct=True).to_numpy(dtype=float), low_strength_quantile, "strength percentile"
    return None


def _flags(res: AnalyzerResult, pairs: pd.DataFrame, d: pd.DataFrame, support: pd.Series | None,
           much_longer: float, low_support: float, low_strength_quantile: float) -> None:
    lr = d["log_length_ratio"].to_numpy()
    long_ = (lr >= np.log2(much_longer)) & ~d["tie"].to_numpy()
    res.add_metric("share_chosen_much_longer", float(long_.sum() / max(int((~d["tie"]).sum()), 1)))
    got = _support(pairs, d.index, support, low_support, low_strength_quantile)
    if got is None:
        res.notes.append("length: no label support is known (single label, no strength), so pairs where "
                         "chosen is much longer cannot be ranked by how contested their label is.")
        return
    sup, threshold, origin = got
    res.params["support_source"] = origin
    hit = long_ & np.isfinite(sup) & (sup <= threshold if origin == "strength percentile"
                                      else sup < threshold)
    res.add_metric("n_longer_chosen_low_support", int(hit.sum()))
    idx = np.flatnonzero(hit)
    if not len(idx):
        return
    ratio = np.exp2(lr[idx])
    score = lr[idx] * (1.0 - sup[idx])
    c, r = d["chosen_chars"].to_numpy()[idx], d["rejected_chars"].to_numpy()[idx]
    detail = [f"chosen {ci} chars vs rejected {ri} ({q:.1f}x); label support {s:.2f} ({origin})"
              for ci, ri, q, s in zip(c, r, ratio, sup[idx], strict=True)]
    res.pair_flags = make_flags(d.index[idx], FLAG_REASON, score, detail).sort_values(
        "score", ascending=False, kind="mergesort").reset_index(drop=True)


def _token_metrics(res: AnalyzerResult, pairs: pd.DataFrame, tok: Any, max_length: int, batch_size: int,
                   d: pd.DataFrame) -> None:
    n = len(pairs)
    counts, same = _trl_counts(res, pairs, tok, max_length, batch_size)
    sides = {"prompt": counts[:, 0], "chosen": counts[:, 1], "rejected": counts[:, 2]}
    for side, v in sides.items():
        d[f"{side}_tokens"] = v
        mean, p50, p95, most = _TOKEN_METRICS[side]
        res.add_metric(mean, float(v.mean()) if n else None)
        res.add_metric(p50, float(np.quantile(v, 0.5)) if n else None)
        res.add_metric(p95, float(np.quantile(v, 0.95)) if n else None)
        res.add_metric(most, int(v.max()) if n else None)
    seq = sides["prompt"] + np.maximum(sides["chosen"], sides["rejected"])
    d["sequence_tokens"] = seq
    d["over_budget"] = seq > max_length
    d["identical_after_truncation"] = same
    res.add_metric("share_over_budget", float(d["over_budget"].mean()) if n else None)
    res.add_metric("share_prompt_over_budget", float((sides["prompt"] >= max_length).mean()) if n else None)
    res.add_metric("share_identical_after_truncation", float(same.mean()) if n else None)
    live = ~pairs["tie"].to_numpy(dtype=bool)
    if live.any():
        res.add_metric("share_longer_chosen_tokens",
                       float((sides["chosen"][live] > sides["rejected"][live]).mean()))
    top = int(max(counts.max() if counts.size else 1, 1))
    edges = np.unique(np.linspace(0, top, 31).round())
    res.add_figure("token_hist", Histogram(edges=edges, counts={s: np.histogram(v, bins=edges)[0]
                                                                for s, v in sides.items()},
                                           xlabel="tokens", marks={"max_length": max_length}))
    res.tables["token_stats"] = pd.DataFrame(
        {s: {"mean": v.mean(), "p50": np.quantile(v, .5), "p95": np.quantile(v, .95), "max": v.max()}
         for s, v in sides.items()}).T if n else pd.DataFrame()


def _trl_counts(res: AnalyzerResult, pairs: pd.DataFrame, tok: Any, max_length: int,
                batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, TRL's (prompt, chosen, rejected) token counts (an ``(n, 3)`` int64 array) and
    whether different chosen and rejected texts become the same ``max_length`` tokens.

    The ids are :func:`prefaudit.scoring.encoding.trl_sequences` split by
    :func:`~prefaudit.scoring.encoding.split_trl`: what DPO trains on. Each sequence is cut to
    its first ``max_length`` tokens (``keep_start``); a pair counts as identical when both
    sequences reach the budget, agree on it, and the prompt is shorter than the budget (TRL
    drops the others).
    """
    if is_conversational(pairs):
        if getattr(tok, "chat_template", None):
            res.params["chat_template"] = True
        else:
            res.notes.append("length: the data is conversational but the tokenizer has no chat template; "
                             "token counts are of the plain text.")
            pairs = pairs[["prompt", "chosen", "rejected"]]
    elif schema_conversational(pairs):
        res.notes.append("length: only some rows hold message lists, so every row is tokenized as text, "
                         "as TRL would.")
    differ = (pairs["chosen"] != pairs["rejected"]).to_numpy(dtype=bool)
    counts = np.zeros((len(pairs), 3), dtype=np.int64)
    same = np.zeros(len(pairs), dtype=bool)
    i = 0
    for batch in trl_sequences(tok, pairs, batch_size=batch_size):
        for with_p, with_c, with_r in zip(*batch, strict=True):
            p, c, r = split_trl(with_p, with_c, with_r)
            counts[i] = len(p), len(c), len(r)
            same[i] = (differ[i] and len(p) < max_length and min(len(with_c), len(with_r)) >= max_length
                       and with_c[:max_length] == with_r[:max_length])
            i += 1
    return counts, same
