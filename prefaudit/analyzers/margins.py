"""Reference-policy margins: how the frozen reference (SFT) model already ranks each pair.

DPO's loss for a pair is ``-log sigmoid(beta * [(log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r))])``:
two of its four log-probabilities come from the reference and are known before training.
The *reference margin* ``m = log pi_ref(chosen | prompt) - log pi_ref(rejected | prompt)``
(natural log, summed over response tokens) says how the reference ranks the pair. DPO only
moves the policy *relative to* the reference, so the first number to read is how often the
reference already agrees with the labels (``reference_accuracy``); pairs it ranks the other
way by a wide margin, pairs whose chosen answer is very unlikely under it (out of
distribution, which DPO is known to exploit), and pairs with a near-zero margin behave
differently in training. :func:`select_by_margin` keeps or drops pairs by margin quantile.

Likelihood displacement (Razin et al. 2024, arXiv 2410.08847): DPO can lower the probability
of the chosen response itself while widening the margin. The same forward pass gives each
pair's CHES score from the reference's hidden states (:mod:`prefaudit.scoring.logprobs`): the
higher it is, the more a DPO step on the pair is expected to push the chosen response down.
CHES is model-specific, so pairs are flagged by rank (``high_ches``, the top ``ches_quantile``
of the dataset) and :func:`select_by_ches` drops the top share before training.

The analyzer works on pairs (:func:`prefaudit.schema.to_pairs`), skips ties (counted), and
takes either a reference model (scored with :mod:`prefaudit.scoring.logprobs`, cached on disk)
or precomputed ``scores``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from prefaudit.errors import ConfigError
from prefaudit.figures import Histogram, Scatter, Values
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, concat_flags, make_flags
from prefaudit.schema import to_pairs, validate
from prefaudit.stats.length_stats import wilson_interval

METRICS = declare(
    "margins", "Reference-model margins",
    MetricSpec("n_pairs_scored", "pairs whose chosen and rejected were both scored"),
    MetricSpec("n_ties_skipped", "tied pairs, not scored (no chosen side)"),
    MetricSpec("reference_accuracy",
               "share of pairs where the reference gives chosen a higher log-prob than rejected (low: DPO "
               "must overturn the reference on many pairs); 95% Wilson interval",
               low="reference_accuracy_low", high="reference_accuracy_high"),
    MetricSpec("median_margin",
               "median of log p_ref(chosen) - log p_ref(rejected), nats summed over tokens; 95% "
               "order-statistic interval", low="median_margin_low", high="median_margin_high"),
    MetricSpec("share_reference_prefers_rejected",
               "share of pairs the reference ranks the other way (margin < 0); 95% Wilson interval",
               low="share_reference_prefers_rejected_low", high="share_reference_prefers_rejected_high"),
    MetricSpec("median_rejected_preference",
               "among the pairs the reference ranks the other way, median of how much more likely rejected "
               "is (nats)"),
    MetricSpec("dpo_reward_scale",
               "beta x median |margin|: reference offset in DPO reward units (above ~1 it dominates the "
               "sigmoid of the loss at this beta)"),
    MetricSpec("share_near_zero_margin",
               "share of pairs the reference cannot tell apart (|margin| < near_zero nats)"),
    MetricSpec("median_margin_per_token",
               "median of the per-token (length-normalised) margin, nats per token"),
    MetricSpec("share_chosen_ood",
               "share of pairs whose chosen per-token log-prob is more than ood_z robust SDs below the "
               "dataset's median response (out of distribution)"),
    MetricSpec("margin_length_correlation",
               "Spearman correlation of the margin with chosen minus rejected tokens (strongly negative: "
               "summed log-probs mostly reward the shorter answer)"),
    MetricSpec("margin_support_correlation",
               "Spearman correlation of the margin with annotator support for chosen (positive: the "
               "reference agrees more where annotators agree)"),
    MetricSpec("share_truncated", "share of pairs where truncation to max_length removed tokens"),
    MetricSpec("ches_median",
               "median CHES = <H+,H-> - ||H+||^2 of the reference's summed last hidden states over "
               "chosen (H+) and rejected (H-) tokens (Razin et al. 2024); model-specific scale, higher: "
               "a DPO step pushes the chosen log-prob further down"),
    MetricSpec("share_positive_ches",
               "share of pairs whose length-normalised CHES (H+/|y+|, H-/|y-|) is above zero: by the paper's "
               "first-order analysis a DPO step on such a pair lowers the chosen log-probability (likelihood "
               "displacement); Wilson interval",
               low="share_positive_ches_low", high="share_positive_ches_high"),
)

#: Columns ``scores`` must have (indexed by pair_id); ``*_truncated`` columns are optional.
REQUIRED_SCORE_COLUMNS: tuple[str, ...] = ("chosen_logp", "rejected_logp", "chosen_tokens", "rejected_tokens")
#: Optional CHES columns of ``scores`` (:func:`prefaudit.scoring.logprobs.score_pairs` gives them).
CHES_COLUMNS: tuple[str, ...] = ("ches", "ches_normalized")
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
#: Robust-z scale: 1.4826 x MAD estimates the standard deviation of a normal sample.
MAD_SCALE = 1.4826
N_SCATTER = 2000


def analyze_margins(table: pd.DataFrame, *, reference_model: str | tuple[Any, Any] | None = None,
                    scores: pd.DataFrame | None = None, beta: float = 0.1,
                    cache_dir: str | Path | None = None, max_length: int | None = None,
                    support: pd.Series | None = None, seed: int = 0, ood_z: float = 3.5,
                    near_zero: float = 1.0, token_budget: int | None = None, device: str | None = None,
                    progress: bool = True, ches_quantile: float = 0.05, encoding: str = "trl",
                    engine: Any = None, pairs: pd.DataFrame | None = None) -> AnalyzerResult:
    """Reference-model margins of each pair and what they say about the data.

    Parameters
    ----------
    table:
        Canonical pair table (several annotators per pair are collapsed by majority).
    pairs:
        ``to_pairs(table)`` when the caller has it (:func:`prefaudit.audit.audit` collapses the
        table once for all analyzers); None: collapsed here.
    reference_model:
        A spec for :func:`prefaudit.scoring.models.load_reference` (local dir, cached hub id,
        ``.gguf`` file, ``"smollm2"``) or an already loaded ``(model, tokenizer)``.
    scores:
        Precomputed log-probs instead of a model: a frame indexed by ``pair_id`` with
        :data:`REQUIRED_SCORE_COLUMNS` (the output of :func:`prefaudit.scoring.logprobs.score_pairs`).
    beta:
        DPO beta, to express margins in implicit-reward units.
    cache_dir:
        Log-prob cache (default ``$PREFAUDIT_CACHE`` or ``~/.cache/prefaudit``). A ``.gguf``
        reference is converted once into ``$PREFAUDIT_CACHE/models`` whatever this is.
    max_length:
        Most tokens per prompt + response; longer ones are truncated and counted.
    support:
        Per-pair support of the chosen label in (0, 1), indexed by ``pair_id`` (the audit
        passes agreement's consensus posterior).
    seed:
        Seeds the subsample of the scatter figure.
    ood_z:
        Chosen is out of distribution when its per-token log-prob is more than ``ood_z``
        robust standard deviations below the median per-token log-prob of all responses.
    near_zero:
        Pairs with ``|margin| < near_zero`` nats are flagged ``near_zero_margin``.
    token_budget, device, progress:
        Passed to the scorer (padded tokens per forward pass, "cpu"/"cuda", progress bar).
    ches_quantile:
        Share of scored pairs with the highest CHES flagged ``high_ches`` (``floor(q x n)``
        pairs, ties broken by ``pair_id``).
    encoding:
        Tokenisation of the scorer (:func:`prefaudit.scoring.encoding.encode_pairs`): ``"trl"``,
        what TRL's DPOTrainer trains on (default), or ``"natural"``.
    engine:
        Where the log-prob pass runs: None / ``"local"``, or ``"ray"`` / an
        :class:`~prefaudit.scoring.engines.Engine` (actors load ``reference_model`` themselves
        when it is a spec); the numbers are the same.
    """
    table = validate(table)
    if (reference_model is None) == (scores is None):
        raise ConfigError("margins needs exactly one of reference_model (a model to score with) "
                          "or scores (precomputed log-probs)")
    if beta <= 0:
        raise ConfigError(f"margins: beta must be positive, got {beta}")
    if not 0 <= ches_quantile < 1:
        raise ConfigError(f"margins: ches_quantile must be in [0, 1), got {ches_quantile}")
    pairs = to_pairs(table) if pairs is None else pairs
    ties = pairs["tie"].to_numpy(dtype=bool)
    scored_pairs = pairs.loc[~ties].set_index("pair_id", drop=False)
    result = AnalyzerResult(analyzer="margins", params={
        "reference_model": _model_name(reference_model), "beta": beta, "max_length": max_length,
        "ood_z": ood_z, "near_zero": near_zero, "seed": seed, "ches_quantile": ches_quantile,
        "encoding": encoding, "precomputed_scores": scores is not None})
    if ties.any():
        result.notes.append(f"{int(ties.sum())} tied pair(s) have no chosen side and were not scored.")
    if scores is None:
        scores = _score(scored_pairs, reference_model, cache_dir=cache_dir, max_length=max_length,
                        token_budget=token_budget, device=device, progress=progress, encoding=encoding,
                        engine=engine)
        discarded = scores.attrs.get("cache_lines_discarded", 0)
        if discarded:
            result.notes.append(f"{discarded} damaged line(s) of the log-prob cache were discarded and "
                                "their pairs scored again.")
    s = _aligned_scores(scores, scored_pairs.index)
    if len(s) == 0:
        result.notes.append("no untied pairs to score: margins were not measured.")
    else:  # the report leads with how well the reference already agrees with the labels
        data = _pair_data(s, beta)
        result.pair_data = data
        _agreement_metrics(result, data["reference_margin"].to_numpy(), beta, near_zero)
    result.add_metric("n_pairs_scored", len(s))
    result.add_metric("n_ties_skipped", int(ties.sum()))
    if len(s) == 0:
        return result
    _ood_metrics(result, data, ood_z)
    _ches_metrics(result, data)
    _relation_metrics(result, data, support)
    _truncation(result, s, max_length)
    _add_figures(result, data, seed)
    result.tables["quantiles"] = pd.DataFrame({
        "quantile": QUANTILES,
        "margin": np.quantile(data["reference_margin"], QUANTILES),
        "margin_per_token": np.nanquantile(data["reference_margin_per_token"], QUANTILES)})
    result.pair_flags = _flags(data, s, near_zero, ood_z, ches_quantile)
    return result


def _model_name(reference_model: Any) -> str | None:
    if reference_model is None or isinstance(reference_model, str):
        return reference_model
    model = reference_model[0]
    return str(getattr(model.config, "_name_or_path", "") or type(model).__name__)


def _score(pairs: pd.DataFrame, reference_model: Any, *, cache_dir: str | Path | None,
           max_length: int | None, token_budget: int | None, device: str | None,
           progress: bool, encoding: str, engine: Any) -> pd.DataFrame:
    from functools import partial

    from prefaudit.env import cache_root
    from prefaudit.scoring.logprobs import score_pairs
    from prefaudit.scoring.models import load_reference

    cache = cache_root(cache_dir)
    load = None
    if isinstance(reference_model, str):  # a converted GGUF always lives in the user cache
        model, tok = load_reference(reference_model, device=device)
        load = partial(load_reference, reference_model, device=device)
    else:
        model, tok = reference_model
    return score_pairs(pairs, model, tok, max_length=max_length, token_budget=token_budget,
                       cache_dir=cache, progress=progress, encoding=encoding, engine=engine, load=load)


def _aligned_scores(scores: pd.DataFrame, pair_ids: pd.Index) -> pd.DataFrame:
    missing_cols = [c for c in REQUIRED_SCORE_COLUMNS if c not in scores.columns]
    if missing_cols:
        raise ConfigError(f"margins: scores lack column(s) {missing_cols}; "
                          f"need {list(REQUIRED_SCORE_COLUMNS)}")
    absent = pair_ids.difference(scores.index)
    if len(absent):
        raise ConfigError(f"margins: scores have no row for {len(absent)} pair(s), "
                          f"e.g. pair_id {absent[0]!r}")
    return scores.loc[pair_ids]


def _pair_data(s: pd.DataFrame, beta: float) -> pd.DataFrame:
    c_tok = s["chosen_tokens"].to_numpy(dtype=float)
    r_tok = s["rejected_tokens"].to_numpy(dtype=float)
    c_pt = s["chosen_logp"].to_numpy() / np.where(c_tok > 0, c_tok, np.nan)
    r_pt = s["rejected_logp"].to_numpy() / np.where(r_tok > 0, r_tok, np.nan)
    margin = (s["chosen_logp"] - s["rejected_logp"]).to_numpy(dtype=float)
    pooled = np.concatenate([c_pt, r_pt])
    pooled = pooled[np.isfinite(pooled)]
    center = float(np.median(pooled)) if len(pooled) else np.nan
    spread = MAD_SCALE * float(np.median(np.abs(pooled - center))) if len(pooled) else np.nan
    z = (c_pt - center) / spread if spread and np.isfinite(spread) else np.full(len(s), np.nan)
    ches = {c: s[c].to_numpy(dtype=float) for c in CHES_COLUMNS if c in s.columns}
    return pd.DataFrame({
        "reference_margin": margin,
        "reference_margin_per_token": c_pt - r_pt,
        "beta_margin": beta * margin,
        "chosen_logp": s["chosen_logp"].to_numpy(dtype=float),
        "rejected_logp": s["rejected_logp"].to_numpy(dtype=float),
        "chosen_logp_per_token": c_pt,
        "rejected_logp_per_token": r_pt,
        "chosen_tokens": c_tok.astype(int),
        "rejected_tokens": r_tok.astype(int),
        "chosen_ood_z": z,
        **ches,
    }, index=pd.Index(s.index, name="pair_id"))


def _median_interval(x: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% interval of the median from order statistics (binomial ranks)."""
    xs = np.sort(x)
    n = len(xs)
    lo = int(stats.binom.ppf(0.025, n, 0.5))
    hi = int(stats.binom.isf(0.025, n, 0.5))
    return float(xs[max(lo - 1, 0)]), float(xs[min(hi, n - 1)])


def _agreement_metrics(result: AnalyzerResult, m: np.ndarray, beta: float, near_zero: float) -> None:
    n = len(m)
    k = int((m > 0).sum())
    low, high = wilson_interval(k, n)
    result.add_metric("reference_accuracy", k / n, low=low, high=high)
    low, high = _median_interval(m)
    result.add_metric("median_margin", float(np.median(m)), low=low, high=high)
    wrong = m < 0
    low, high = wilson_interval(int(wrong.sum()), n)
    result.add_metric("share_reference_prefers_rejected", float(wrong.mean()), low=low, high=high)
    result.add_metric("median_rejected_preference", float(np.median(-m[wrong])) if wrong.any() else None)
    result.add_metric("dpo_reward_scale", beta * float(np.median(np.abs(m))))
    result.add_metric("share_near_zero_margin", float((np.abs(m) < near_zero).mean()))


def _ood_metrics(result: AnalyzerResult, data: pd.DataFrame, ood_z: float) -> None:
    pt = data["reference_margin_per_token"].to_numpy()
    result.add_metric("median_margin_per_token", float(np.nanmedian(pt)) if np.isfinite(pt).any() else None)
    z = data["chosen_ood_z"].to_numpy()
    if not np.isfinite(z).any():
        result.notes.append("per-token log-probs have no spread: out-of-distribution chosen not measured.")
        result.add_metric("share_chosen_ood", None)
        return
    result.add_metric("share_chosen_ood", float((z < -ood_z).mean()))


def _ches_metrics(result: AnalyzerResult, data: pd.DataFrame) -> None:
    if not all(c in data.columns for c in CHES_COLUMNS):
        result.notes.append("the scores carry no CHES: likelihood-displacement risk not measured.")
        result.add_metric("ches_median", None)
        result.add_metric("share_positive_ches", None)
        return
    ches, norm = data["ches"].to_numpy(), data["ches_normalized"].to_numpy()
    result.add_metric("ches_median", float(np.nanmedian(ches)) if np.isfinite(ches).any() else None)
    ok = np.isfinite(norm)
    k, n = int((norm[ok] > 0).sum()), int(ok.sum())
    low, high = wilson_interval(k, n) if n else (None, None)
    result.add_metric("share_positive_ches", k / n if n else None, low=low, high=high)


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def _relation_metrics(result: AnalyzerResult, data: pd.DataFrame, support: pd.Series | None) -> None:
    m = data["reference_margin"].to_numpy()
    dlen = (data["chosen_tokens"] - data["rejected_tokens"]).to_numpy(dtype=float)
    result.add_metric("margin_length_correlation", _spearman(m, dlen))
    if support is None:
        result.notes.append("no per-pair annotator support given: margin vs agreement not measured.")
        return
    sup = pd.to_numeric(pd.Series(support), errors="coerce").reindex(data.index).to_numpy(dtype=float)
    rho = _spearman(m, sup)
    if rho is None:
        result.notes.append("annotator support is constant or missing for most pairs: "
                            "margin vs agreement not measured.")
    result.add_metric("margin_support_correlation", rho)


def _truncation(result: AnalyzerResult, s: pd.DataFrame, max_length: int | None) -> None:
    cols = [c for c in ("prompt_truncated", "chosen_truncated", "rejected_truncated") if c in s.columns]
    if not cols:
        return
    cut = (s[cols].to_numpy(dtype=float) > 0).any(axis=1)
    result.add_metric("share_truncated", float(cut.mean()))
    if cut.any():
        result.notes.append(f"{int(cut.sum())} pair(s) were truncated to max_length={max_length} tokens; "
                            "their log-probs cover only the tokens kept (flagged 'truncated').")


def _add_histogram(result: AnalyzerResult, name: str, x: np.ndarray, xlabel: str, zero: bool) -> None:
    """A 30-bin histogram of the finite values of ``x`` (none drawn when there are none)."""
    x = x[np.isfinite(x)]
    if not len(x):
        return
    counts, edges = np.histogram(x, bins=30)
    marks = {"0": 0.0} if zero and edges[0] < 0 < edges[-1] else {}
    result.add_figure(name, Histogram(edges=edges, counts={"pairs": counts}, xlabel=xlabel, marks=marks))


def _add_figures(result: AnalyzerResult, data: pd.DataFrame, seed: int) -> None:
    m = data["reference_margin"].to_numpy()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data), size=min(N_SCATTER, len(data)), replace=False))
    _add_histogram(result, "margin_histogram", m, "reference margin (nats)", zero=True)
    _add_histogram(result, "margin_per_token_histogram", data["reference_margin_per_token"].to_numpy(),
                   "reference margin per token (nats)", zero=True)
    _add_histogram(result, "chosen_logp_per_token_histogram", data["chosen_logp_per_token"].to_numpy(),
                   "chosen log-prob per token (nats)", zero=False)
    result.add_figure("margin_quantiles", Values(
        {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(m, QUANTILES), strict=True)}))
    result.add_figure("margin_vs_length", Scatter(
        x=(data["chosen_tokens"] - data["rejected_tokens"]).to_numpy()[idx], y=m[idx],
        xlabel="chosen minus rejected tokens", ylabel="reference margin (nats)"))


def _flags(data: pd.DataFrame, s: pd.DataFrame, near_zero: float, ood_z: float,
           ches_quantile: float) -> pd.DataFrame:
    m = data["reference_margin"]
    pt = data["reference_margin_per_token"]
    wrong = m < 0
    frames = [make_flags(
        data.index[wrong], "reference_prefers_rejected", -m[wrong],
        [f"reference log-prob of rejected exceeds chosen by {-a:.2f} nats ({-b:.3f}/token)"
         for a, b in zip(m[wrong], pt[wrong], strict=True)])]
    z = data["chosen_ood_z"]
    ood = z < -ood_z
    frames.append(make_flags(
        data.index[ood], "chosen_ood", -z[ood],
        [f"chosen per-token log-prob {v:.2f} is {-zz:.1f} robust SDs below the dataset median"
         for v, zz in zip(data["chosen_logp_per_token"][ood], z[ood], strict=True)]))
    near = m.abs() < near_zero
    frames.append(make_flags(data.index[near], "near_zero_margin", near_zero - m[near].abs(),
                             [f"margin {a:+.3f} nats: the reference cannot tell the two apart"
                              for a in m[near]]))
    if "ches" in data.columns:
        ches = data["ches"]
        top = _ranked(ches)[len(ches) - int(np.floor(ches_quantile * len(ches))):]
        frames.append(make_flags(
            data.index[top], "high_ches", ches.iloc[top],
            [f"CHES {a:.4g} (normalised {b:.4g}) is in the top {ches_quantile:.0%} of the dataset: "
             "DPO on this pair is likely to lower the chosen log-prob"
             for a, b in zip(ches.iloc[top], data["ches_normalized"].iloc[top], strict=True)]))
    cols = [c for c in ("prompt_truncated", "chosen_truncated", "rejected_truncated") if c in s.columns]
    if cols:
        dropped = s[cols].sum(axis=1).to_numpy(dtype=float)
        cut = dropped > 0
        frames.append(make_flags(data.index[cut], "truncated", dropped[cut],
                                 [f"{int(d)} token(s) cut to fit max_length" for d in dropped[cut]]))
    return concat_flags(frames)


def select_by_margin(margins: AnalyzerResult | pd.DataFrame | pd.Series, *, drop_low: float = 0.0,
                     drop_high: float = 0.0, per_token: bool = False) -> pd.Index:
    """Pair ids to keep for training after dropping the lowest and highest reference margins.

    ``drop_low`` / ``drop_high`` are the fractions of pairs to drop at each end (pairs the
    reference ranks most strongly the other way, which are often mislabelled, and pairs it
    already ranks right by far, which teach little). Exactly ``floor(fraction x n)`` pairs are
    dropped at each end; equal margins are broken by ``pair_id``. ``margins`` is the
    margins result, its ``pair_data``, or a Series of margins indexed by ``pair_id``;
    ``per_token`` ranks by the length-normalised margin instead. Kept ids are returned in their
    original order.
    """
    if not (0 <= drop_low < 1 and 0 <= drop_high < 1 and drop_low + drop_high < 1):
        raise ConfigError(f"select_by_margin: need 0 <= drop_low, drop_high and drop_low + drop_high < 1, "
                          f"got {drop_low}, {drop_high}")
    if isinstance(margins, AnalyzerResult):
        if margins.pair_data is None:
            raise ConfigError("select_by_margin: this margins result has no per-pair data")
        margins = margins.pair_data
    if isinstance(margins, pd.DataFrame):
        margins = margins["reference_margin_per_token" if per_token else "reference_margin"]
    values = pd.Series(margins, dtype="float64")
    n = len(values)
    order = _ranked(values)
    n_low, n_high = int(np.floor(drop_low * n)), int(np.floor(drop_high * n))
    keep = np.zeros(n, dtype=bool)
    keep[order[n_low:n - n_high]] = True
    return values.index[keep]


def _ranked(values: pd.Series) -> np.ndarray:
    """Positions of ``values`` from lowest to highest, NaN first, equal values by ``pair_id``."""
    return pd.DataFrame({"m": values.to_numpy(dtype=float), "id": values.index.astype(str)}).sort_values(
        ["m", "id"], kind="mergesort", na_position="first").index.to_numpy()


def select_by_ches(margins: AnalyzerResult | pd.DataFrame | pd.Series, *, drop_high: float = 0.0,
                   normalized: bool = False) -> pd.Index:
    """Pair ids to keep for training after dropping the pairs with the highest CHES.

    High-CHES pairs are the ones a DPO step is expected to lower the chosen log-probability on
    (likelihood displacement, Razin et al. 2024, who filter them out the same way). Exactly
    ``floor(drop_high x n)`` pairs are dropped; equal scores are broken by ``pair_id``.
    ``margins`` is the margins result, its ``pair_data``, or a Series of CHES indexed by
    ``pair_id``; ``normalized`` ranks by the length-normalised CHES. Kept ids are returned in
    their original order.
    """
    if not 0 <= drop_high < 1:
        raise ConfigError(f"select_by_ches: need 0 <= drop_high < 1, got {drop_high}")
    if isinstance(margins, AnalyzerResult):
        if margins.pair_data is None:
            raise ConfigError("select_by_ches: this margins result has no per-pair data")
        margins = margins.pair_data
    if isinstance(margins, pd.DataFrame):
        column = CHES_COLUMNS[1] if normalized else CHES_COLUMNS[0]
        if column not in margins.columns:
            raise ConfigError("select_by_ches: the margins have no CHES scores (they come from scoring "
                              "with a reference model, not from precomputed log-probs)")
        margins = margins[column]
    values = pd.Series(margins, dtype="float64")
    n = len(values)
    keep = np.zeros(n, dtype=bool)
    keep[_ranked(values)[:n - int(np.floor(drop_high * n))]] = True
    return values.index[keep]
