"""Annotator agreement: how far the labels can be trusted, pair by pair and annotator by annotator.

``analyze_agreement(table)`` reads the pairs x annotators label matrix (A, B, tie; missing
allowed) and reports raw agreement, Krippendorff's alpha with a bootstrap interval, Fleiss'
kappa, pairwise Cohen's kappa, per-annotator reliability, a Dawid–Skene consensus label with
its posterior per pair, contested pairs, and ``flip_rate``: the expected share of the final
chosen/rejected labels that are the wrong way round. The training step can use ``flip_rate``
as the noise rate of robust DPO (rDPO) or the label smoothing of conservative DPO (cDPO).

The *final* label of a pair is the orientation :func:`prefaudit.schema.to_pairs` keeps (the
majority of the pair's judgements; a tie when the majority is a tie or A and B are level).
Labels are coded in :func:`prefaudit.schema.label_matrix` orientation, where response A is
whichever text sorts first, so no annotator's judgement decides which response is "A".

Two codings, two sets of coefficients:

- *orientation-free* (the headline ``krippendorff_alpha``, ``fleiss_kappa``,
  ``mean_cohen_kappa``): every comparison enters twice, once in each orientation (A and B
  swapped, ties unchanged; :func:`prefaudit.stats.reliability.both_orientations`), so
  the number depends neither on the sort that names A nor on the order in the file. The
  Dawid–Skene model is fitted the same way, so its consensus and ``flip_rate`` do not either.
- *as presented* (``*_as_presented``): A is the response the annotator was shown first
  (:func:`prefaudit.schema.presented_label_matrix`); equal to the ``krippendorff`` package on
  a file's own label columns. Not measured when the data does not record the order. When one
  position wins most comparisons, chance agreement in this coding is high and the
  coefficient is low although the annotators agree (the "kappa paradox").

A repeated judgement of the same comparison by the same annotator (``repeat`` rows) is left
out: each annotator counts once per comparison, with its first judgement.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd

from prefaudit.errors import ConfigError
from prefaudit.figures import Bars, Heatmap, Histogram
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, concat_flags, make_flags
from prefaudit.schema import (
    LABEL_NAMES,
    LABEL_TIE,
    SINGLE_ANNOTATOR,
    LabelTriples,
    first_judgements,
    has_order,
    label_triples,
)
from prefaudit.stats import bootstrap, reliability
from prefaudit.stats.dawid_skene import (
    DawidSkeneFit,
    annotator_accuracy,
    fit_dawid_skene_triples,
    flip_probability,
)

CHANCE_CAVEAT = ("skewed label shares (e.g. mostly 'B' or almost no ties) make it low even when "
                 "raw agreement is high; read it next to raw_agreement")
METRICS = declare(
    "agreement", "Annotator agreement and label noise",
    MetricSpec("n_annotators", "distinct named annotators in the table"),
    MetricSpec("n_pairs_multi", "pairs with two or more judgements (the pairs agreement is measured on)"),
    MetricSpec("mean_labels_per_pair", "average number of judgements per pair"),
    MetricSpec("raw_agreement",
               "mean share of annotator pairs that gave a pair the same label (A, B or tie)"),
    MetricSpec("raw_agreement_no_ties", "raw_agreement counting only A/B labels (tie labels left out)"),
    MetricSpec("krippendorff_alpha",
               "Krippendorff's alpha (nominal), orientation-free (each comparison counted in both "
               "orientations, so it depends neither on which response is A nor on which was shown first): "
               "1 perfect, 0 "
               f"chance-level agreement; {CHANCE_CAVEAT}; bootstrap percentile interval over comparisons",
               low="krippendorff_alpha_low", high="krippendorff_alpha_high"),
    MetricSpec("krippendorff_alpha_as_presented",
               "Krippendorff's alpha (nominal) on the labels as shown to the annotators (A = the response "
               "shown first); far below krippendorff_alpha when one position wins most comparisons; "
               "bootstrap interval",
               low="krippendorff_alpha_as_presented_low", high="krippendorff_alpha_as_presented_high"),
    MetricSpec("fleiss_kappa",
               f"Fleiss' kappa, orientation-free (needs the same number of labels on every pair); "
               f"{CHANCE_CAVEAT}"),
    MetricSpec("fleiss_kappa_as_presented",
               "Fleiss' kappa on the labels as shown to the annotators (A = shown first)"),
    MetricSpec("mean_cohen_kappa",
               f"mean pairwise Cohen's kappa, orientation-free, over annotator pairs that share pairs; "
               f"{CHANCE_CAVEAT}"),
    MetricSpec("mean_cohen_kappa_as_presented",
               "mean pairwise Cohen's kappa on the labels as shown to the annotators (A = shown first)"),
    MetricSpec("first_position_label_share",
               "share of non-tie labels (first judgement per annotator and comparison) won by the response "
               "shown first; far from 0.5 makes the as-presented coefficients low"),
    MetricSpec("tie_label_share", "share of all judgements that are ties"),
    MetricSpec("flip_rate",
               "expected share of final (non-tie) chosen/rejected labels that are the wrong way round "
               "(a true tie counts half; single-label data: the mean of the supplied noise proxy, named in "
               "the notes); use as the rDPO noise rate or cDPO label smoothing; bootstrap percentile "
               "interval",
               low="flip_rate_low", high="flip_rate_high"),
    MetricSpec("contested_share",
               "share of pairs whose consensus is uncertain (Dawid-Skene posterior below "
               "contested_threshold, or an even split)"),
    MetricSpec("consensus_disagrees_share",
               "share of pairs where the Dawid-Skene consensus differs from the final label"),
    MetricSpec("ds_iterations", "EM iterations Dawid-Skene needed to converge"),
    MetricSpec("min_annotator_accuracy",
               "Dawid-Skene accuracy of the least reliable annotator (0.5 = coin flip on A/B)"),
)
#: Metrics that need two or more labels per pair (not measured on single-label data).
NEEDS_TWO_LABELS: tuple[str, ...] = (
    "raw_agreement", "raw_agreement_no_ties", "krippendorff_alpha", "krippendorff_alpha_as_presented",
    "fleiss_kappa", "fleiss_kappa_as_presented", "mean_cohen_kappa", "mean_cohen_kappa_as_presented",
    "first_position_label_share", "tie_label_share", "contested_share", "consensus_disagrees_share",
    "min_annotator_accuracy", "ds_iterations",
)
#: The as-presented coefficients, not measured when the order is unknown.
AS_PRESENTED: tuple[str, ...] = (
    "krippendorff_alpha_as_presented", "fleiss_kappa_as_presented", "mean_cohen_kappa_as_presented",
    "first_position_label_share",
)
SINGLE_LABEL_NOTE = ("Agreement cannot be computed from one label per pair: no pair was judged by two "
                     "different (named) annotators, so there is nothing to compare a label with. "
                     "Reliability, consensus and the Dawid-Skene flip rate need two or more judgements per "
                     "pair.")
N_HIST_BINS = 20
#: The two alphas differing by more than this gets a note explaining why.
ALPHA_GAP_NOTE = 0.05


def analyze_agreement(table: pd.DataFrame, *, seed: int = 0, n_bootstrap: int = 1000, ci: float = 0.95,
                      contested_threshold: float = 0.99, ds_smoothing: float = 1.0, ds_tol: float = 1e-6,
                      ds_max_iter: int = 500, noise_proxy: pd.Series | None = None) -> AnalyzerResult:
    """Measure annotator agreement and estimate the label-flip rate of a canonical table.

    Parameters
    ----------
    table:
        A canonical judgement table (:mod:`prefaudit.schema`).
    seed:
        Seeds the bootstrap; the same table and seed give the same numbers.
    n_bootstrap:
        Resamples of the pairs for the intervals of ``krippendorff_alpha`` and ``flip_rate``.
    ci:
        Coverage of the percentile intervals.
    contested_threshold:
        A pair is contested when the Dawid–Skene posterior of its consensus label is below
        this, or when its top vote count is shared by two labels (an even split). The default
        is high because Dawid–Skene assumes annotators err independently, which makes its
        posteriors confident: three ~95%-accurate annotators split 2-vs-1 already give ~0.97.
    ds_smoothing, ds_tol, ds_max_iter:
        Dawid–Skene pseudo-count, convergence tolerance and iteration cap
        (:func:`prefaudit.stats.dawid_skene.fit_dawid_skene`).
    noise_proxy:
        For single-label tables only: a per-pair probability (indexed by ``pair_id``, in
        [0, 1]) that the label is wrong, computed elsewhere (e.g. by another analyzer). Its
        mean becomes ``flip_rate``, with the series name recorded as the source. Ignored,
        with a note, when the table has several labels per pair.

    Returns
    -------
    AnalyzerResult
        ``pair_data`` is indexed by ``pair_id`` with ``final_label`` and ``consensus_label``
        (0 = A, 1 = B, 2 = tie, A being the text that sorts first (schema.response_a)),
        ``consensus_posterior``
        (Dawid–Skene posterior probability that the *final* label is the true one — for a
        final tie, that the pair is truly a tie), ``p_a``/``p_b``/``p_tie`` (the full
        posterior), ``flip_probability``, ``n_labels``, ``majority_share`` (share of the
        pair's labels equal to its most frequent label) and ``contested``.
    """
    if n_bootstrap < 1 or not 0 < ci < 1 or not 0 < contested_threshold <= 1:
        raise ConfigError(f"agreement needs n_bootstrap >= 1, 0 < ci < 1 and 0 < contested_threshold <= 1 "
                          f"(got {n_bootstrap}, {ci}, {contested_threshold})")
    params = {"seed": seed, "n_bootstrap": n_bootstrap, "ci": ci, "contested_threshold": contested_threshold,
              "ds_smoothing": ds_smoothing, "ds_tol": ds_tol, "ds_max_iter": ds_max_iter,
              "noise_proxy": None if noise_proxy is None else str(noise_proxy.name)}
    result = AnalyzerResult(analyzer="agreement", params=params)
    n_rows = len(table)
    table = first_judgements(table)
    if len(table) < n_rows:
        result.notes.append(f"{n_rows - len(table)} repeated judgement(s) (an annotator judging the same "
                            "comparison again) are left out: each annotator counts once per comparison, "
                            "with its first judgement. The judges analyzer uses the repeats for swap "
                            "consistency.")
    labels = label_triples(table)
    n_pairs, n_annotators = len(labels.pair_ids), len(labels.annotators)
    counts = reliability.triple_counts(labels.pair, labels.label, n_pairs)
    n_labels = counts.sum(axis=1)
    multi = (n_labels >= 2).any() and n_annotators >= 2
    _add_counts(result, labels.annotators, n_labels, multi)
    if not multi:
        _single_label(result, labels.pair_ids, noise_proxy, seed, n_bootstrap, ci)
        return result
    if noise_proxy is not None:
        result.notes.append("noise_proxy was ignored: with several labels per pair the flip rate comes "
                            "from the Dawid-Skene posteriors.")

    triples = (labels.pair, labels.annotator, labels.label)
    # every comparison in both orientations (reliability.both_orientations), never built
    fit = fit_dawid_skene_triples(*triples, (n_pairs, n_annotators), smoothing=ds_smoothing, tol=ds_tol,
                                  max_iter=ds_max_iter, swap_ab=True)
    posterior = fit.posterior
    flip = flip_probability(posterior, labels.final)
    kappa, overlap = reliability.cohen_kappa_triples(*triples, n_annotators, both_orientations=True)
    overlap = overlap // 2
    _add_reliability(result, counts, kappa, overlap, seed, n_bootstrap, ci, flip)
    _add_as_presented(result, labels, label_triples(table, as_presented=True) if has_order(table) else None,
                      seed, n_bootstrap, ci)
    pair_data = _pair_data(labels.pair_ids, counts, posterior, labels.final, flip, contested_threshold)
    result.pair_data = pair_data
    _add_consensus(result, pair_data, fit, contested_threshold)
    _add_annotators(result, labels, counts, fit, kappa)
    result.pair_flags = _flags(pair_data, contested_threshold)
    return result


def _add_counts(result: AnalyzerResult, annotators: list[str], n_labels: np.ndarray, multi: bool) -> None:
    result.add_metric("n_annotators", len([a for a in annotators if a != SINGLE_ANNOTATOR]))
    result.add_metric("n_pairs_multi", int((n_labels >= 2).sum()) if multi else 0)
    result.add_metric("mean_labels_per_pair", float(n_labels.mean()) if len(n_labels) else None)


def _single_label(result: AnalyzerResult, pair_ids: np.ndarray, noise_proxy: pd.Series | None,
                  seed: int, n_bootstrap: int, ci: float) -> None:
    """Metrics with value None and the reason; flip_rate from an external proxy if one is given."""
    for name in NEEDS_TWO_LABELS:
        result.add_metric(name, None)
    result.notes.append(SINGLE_LABEL_NOTE)
    if noise_proxy is None:
        result.add_metric("flip_rate", None)
        result.notes.append("flip_rate: no label-noise proxy was supplied, so no flip rate is estimated.")
        return
    proxy = pd.Series(noise_proxy).reindex(pair_ids).astype("float64")
    values = proxy.dropna().to_numpy()
    if not len(values) or ((values < 0) | (values > 1)).any():
        raise ConfigError("noise_proxy must hold probabilities in [0, 1] for at least one pair of the table")
    sums = bootstrap.bootstrap_sums(values, n_bootstrap, seed)[:, 0]
    low, high = bootstrap.percentile_interval(sums / len(values), ci)
    source = str(noise_proxy.name) if noise_proxy.name is not None else "an external noise proxy"
    result.add_metric("flip_rate", float(values.mean()), low=low, high=high)
    result.notes.append(f"flip_rate is the mean of {source} over {len(values)} pairs (not a Dawid-Skene "
                        "estimate: there is only one label per pair).")


def _distinct_rows(counts: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One pair per distinct (category counts, flip probability), as an index into the pairs,
    and how many pairs share it."""
    base = int(counts.max(initial=0)) + 1
    count_code = (counts[:, 0] * base + counts[:, 1]) * base + counts[:, 2]
    flip_code, flips = pd.factorize(flip)  # NaN (a final tie) gets its own code, -1
    _, first, n_same = np.unique(count_code * (len(flips) + 1) + flip_code + 1, return_index=True,
                                 return_counts=True)
    return first, n_same


def _fleiss_both_orientations(counts: np.ndarray) -> float:
    """Fleiss' kappa of the pairs in both orientations; NaN (not built) unless every pair has
    the same number, two or more, of labels."""
    n_labels = counts.sum(axis=1)
    if not len(counts) or n_labels.min() < 2 or n_labels.min() != n_labels.max():
        return float("nan")
    return reliability.fleiss_kappa(np.vstack([counts, counts[:, [1, 0, LABEL_TIE]]]))


def _package_alpha(counts: np.ndarray) -> float:
    """The ``krippendorff`` package's nominal alpha of per-unit category counts (its value on
    the label matrix they come from). Units with fewer than two labels add exact zeros to the
    package's sums and are left out (which only changes the order of its float summation: the
    value can differ from the full matrix's in the last digits, ~1e-16), as are categories
    that never occur."""
    counts = counts[counts.sum(axis=1) >= 2]
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    return float(krippendorff.alpha(value_counts=counts[:, present], value_domain=present.astype("float64"),
                                    level_of_measurement="nominal"))


def _add_reliability(result: AnalyzerResult, counts: np.ndarray, kappa: np.ndarray,
                     overlap: np.ndarray, seed: int, n_bootstrap: int, ci: float, flip: np.ndarray) -> None:
    """Agreement coefficients, and alpha and flip_rate with one shared bootstrap over pairs.

    All coefficients here are orientation-free (``kappa`` is the Cohen's kappa matrix of
    :func:`reliability.both_orientations`). Alpha's point value comes from the
    ``krippendorff`` package on the two-orientation counts (:func:`_package_alpha`); the
    resamples use the same
    coefficient written as per-pair sums (:func:`reliability.symmetric_alpha_parts`, equal to
    the package's value to rounding), resampling each comparison with both its copies.
    """
    result.add_metric("raw_agreement", reliability.raw_agreement(counts))
    result.add_metric("raw_agreement_no_ties", reliability.raw_agreement(counts[:, :LABEL_TIE]))
    non_tie = np.isfinite(flip)
    # pairs with the same counts and flip probability have the same per-pair values: one row each
    first, n_same = _distinct_rows(counts, flip)
    parts = reliability.symmetric_alpha_parts(counts[first])
    defined = np.isfinite(reliability.alpha_from_totals(n_same @ parts))
    multi = counts[counts.sum(axis=1) >= 2]
    alpha = _package_alpha(np.vstack([multi, multi[:, [1, 0, LABEL_TIE]]])) if defined else float("nan")
    per_pair = np.column_stack([parts, np.where(non_tie[first], flip[first], 0.0), non_tie[first]])
    sums = bootstrap.bootstrap_sums(per_pair, n_bootstrap, seed, sizes=n_same)
    boot_alpha = reliability.alpha_from_totals(sums[:, :-2])
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_flip = sums[:, -2] / sums[:, -1]
    low, high = bootstrap.percentile_interval(boot_alpha, ci)
    result.add_metric("krippendorff_alpha", alpha, low=low, high=high)
    fleiss = _fleiss_both_orientations(counts)
    result.add_metric("fleiss_kappa", fleiss)
    if not np.isfinite(fleiss):
        result.notes.append("fleiss_kappa is not reported: pairs have different numbers of labels "
                            "(Krippendorff's alpha handles that).")
    if not np.isfinite(alpha):
        result.notes.append("krippendorff_alpha is undefined: only one label category occurs.")
    off = ~np.eye(len(kappa), dtype=bool) & (overlap > 0) & np.isfinite(kappa)
    result.add_metric("mean_cohen_kappa", float(kappa[off].mean()) if off.any() else None)
    result.add_metric("tie_label_share", float(counts[:, LABEL_TIE].sum() / counts.sum()))
    flip_value = float(flip[non_tie].mean()) if non_tie.any() else None
    low, high = bootstrap.percentile_interval(boot_flip, ci)
    result.add_metric("flip_rate", flip_value, low=low, high=high)
    result.notes.append(f"flip_rate averages the Dawid-Skene probability that the final label is wrong over "
                        f"{int(non_tie.sum())} of {len(flip)} pairs whose final label is not a tie; its "
                        "interval resamples pairs with the model held fixed. The model assumes annotators "
                        "err independently given the true label; pairs that are hard for everyone make it an "
                        "underestimate.")


def _add_as_presented(result: AnalyzerResult, labels: LabelTriples, presented: LabelTriples | None,
                      seed: int, n_bootstrap: int, ci: float) -> None:
    """Alpha, Fleiss' and Cohen's kappa on the labels as presented (A = shown first), the
    first-position share of the labels, and a note when the two alphas differ by more than
    :data:`ALPHA_GAP_NOTE`. Not measured (None, with a note) when no pair has two labels of
    known order (``presented`` is None when no judgement records its order)."""
    counts = (np.zeros((0, len(LABEL_NAMES)), dtype=np.int64) if presented is None else
              reliability.triple_counts(presented.pair, presented.label, len(presented.pair_ids)))
    known = counts.sum(axis=1) >= 2
    if presented is None or not known.any():
        for name in AS_PRESENTED:
            result.add_metric(name, None)
        result.notes.append("The as-presented coefficients are not measured: the data does not record which "
                            "response each annotator saw first.")
        return
    n_unknown = len(labels.label) - len(presented.label)  # a label of known order is a label
    if n_unknown:
        result.notes.append(f"The as-presented coefficients leave out {n_unknown} judgement(s) whose "
                            "presentation order is not recorded.")
    parts = reliability.alpha_parts(counts[known])
    alpha = float(reliability.alpha_from_totals(parts.sum(axis=0)))
    if np.isfinite(alpha):
        alpha = _package_alpha(counts[known])
    low, high = bootstrap.percentile_interval(
        reliability.alpha_from_totals(bootstrap.bootstrap_sums(parts, n_bootstrap, seed)), ci)
    result.add_metric("krippendorff_alpha_as_presented", alpha, low=low, high=high)
    result.add_metric("fleiss_kappa_as_presented", reliability.fleiss_kappa(counts[known]))
    annotators = presented.annotators
    kappa, overlap = reliability.cohen_kappa_triples(presented.pair, presented.annotator, presented.label,
                                                     len(annotators))
    off = ~np.eye(len(kappa), dtype=bool) & (overlap > 0) & np.isfinite(kappa)
    result.add_metric("mean_cohen_kappa_as_presented", float(kappa[off].mean()) if off.any() else None)
    result.tables["cohen_kappa_as_presented"] = pd.DataFrame(kappa, index=annotators, columns=annotators)
    first, second = int(counts[:, 0].sum()), int(counts[:, 1].sum())
    share = first / (first + second) if first + second else float("nan")
    result.add_metric("first_position_label_share", share)
    headline = result.metrics["krippendorff_alpha"].value
    if headline is not None and np.isfinite(alpha) and abs(headline - alpha) > ALPHA_GAP_NOTE:
        side = "first" if share >= 0.5 else "second"
        result.notes.append(
            f"The orientation-free alpha ({headline:.3f}) and the as-presented alpha ({alpha:.3f}) differ by "
            f"{abs(headline - alpha):.3f}: the response shown {side} wins most comparisons (the first-shown "
            f"response won {share:.1%} of non-tie labels), so agreement expected by chance is high as "
            "presented and the as-presented alpha is low although the annotators agree (the kappa "
            "paradox); the orientation-free alpha does not depend on the order.")


def _pair_data(pair_ids: np.ndarray, counts: np.ndarray, posterior: np.ndarray, final: np.ndarray,
               flip: np.ndarray, threshold: float) -> pd.DataFrame:
    n_labels = counts.sum(axis=1)
    top = counts.max(axis=1)
    even_split = (n_labels >= 2) & ((counts == top[:, None]).sum(axis=1) > 1)
    consensus = posterior.argmax(axis=1)
    consensus_p = posterior.max(axis=1)
    rows = np.arange(len(final))
    return pd.DataFrame({
        "final_label": final,
        "consensus_label": consensus,
        "consensus_posterior": posterior[rows, final],
        "p_a": posterior[:, 0], "p_b": posterior[:, 1], "p_tie": posterior[:, LABEL_TIE],
        "flip_probability": flip,
        "n_labels": n_labels,
        "majority_share": top / n_labels,
        "even_split": even_split,
        "contested": (consensus_p < threshold) | even_split,
    }, index=pd.Index(pair_ids, name="pair_id", dtype=object))  # the table's own id objects


def _add_consensus(result: AnalyzerResult, pair_data: pd.DataFrame, fit: DawidSkeneFit,
                   threshold: float) -> None:
    result.add_metric("contested_share", float(pair_data["contested"].mean()))
    disagree = pair_data["consensus_label"] != pair_data["final_label"]
    result.add_metric("consensus_disagrees_share", float(disagree.mean()))
    result.add_metric("ds_iterations", fit.n_iter)
    if not fit.converged:
        result.notes.append(f"Dawid-Skene stopped after {fit.n_iter} iterations without converging; "
                            "its posteriors are approximate.")
    edges = np.linspace(0.0, 1.0, N_HIST_BINS + 1)
    hist, _ = np.histogram(pair_data["consensus_posterior"].to_numpy(), bins=edges)
    result.add_figure("posterior_histogram", Histogram(edges=edges, counts={"pairs": hist},
                                                       xlabel="posterior that the final label is right"))


def _add_annotators(result: AnalyzerResult, labels: LabelTriples, counts: np.ndarray, fit: DawidSkeneFit,
                    kappa: np.ndarray) -> None:
    names = labels.annotators
    loo, n_compared = reliability.leave_one_out_triples(labels.pair, labels.annotator, labels.label, counts,
                                                        len(names))
    accuracy = annotator_accuracy(fit)
    per_class = np.diagonal(fit.confusion, axis1=1, axis2=2)
    used = fit.prior > 0
    table = pd.DataFrame({
        "n_labels": np.bincount(labels.annotator, minlength=len(names)),
        "loo_majority_agreement": loo,
        "n_loo_compared": n_compared,
        "ds_accuracy": accuracy,
        **{f"ds_recall_{LABEL_NAMES[c]}": per_class[:, c] for c in range(len(LABEL_NAMES)) if used[c]},
    }, index=pd.Index(names, name="annotator"))
    table["rank"] = table["ds_accuracy"].rank(ascending=False, method="min").astype(int)
    result.tables["annotators"] = table.sort_values("rank", kind="mergesort")
    result.tables["cohen_kappa"] = pd.DataFrame(kappa, index=names, columns=names)
    result.add_metric("min_annotator_accuracy", float(accuracy.min()))
    result.add_figure("cohen_kappa", Heatmap(labels=names, matrices=[kappa]))
    result.add_figure("annotator_reliability", Bars(
        labels=names, values={"ds_accuracy": accuracy, "loo_majority_agreement": loo}, n=table["n_labels"]))
    result.add_figure("annotator_confusion", Heatmap(
        labels=list(LABEL_NAMES), matrices=list(fit.confusion), names=names,
        note="per annotator: row = true label, column = label given (A = the pair text that sorts first)"))


def _flags(pair_data: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Contested pairs and pairs whose consensus differs from the final label; score = 1 - posterior."""
    names = np.array(LABEL_NAMES, dtype=object)
    # numpy masks: a boolean Series would make pandas build the str index's hash engine
    contested = pair_data[pair_data["contested"].to_numpy()]
    best = contested[["p_a", "p_b", "p_tie"]].max(axis=1).to_numpy()
    detail = [f"{'even split; ' if split else ''}consensus {names[c]} at posterior {p:.2f} "
              f"(threshold {threshold}); majority share {s:.2f} of {n} labels"
              for split, c, p, s, n in zip(contested["even_split"], contested["consensus_label"], best,
                                           contested["majority_share"], contested["n_labels"], strict=True)]
    flags = [make_flags(contested.index, "contested", 1.0 - contested["consensus_posterior"].to_numpy(),
                        detail)]
    off = pair_data[pair_data["consensus_label"].to_numpy() != pair_data["final_label"].to_numpy()]
    detail = [f"final label {names[f]} has posterior {p:.2f}; Dawid-Skene consensus is {names[c]}"
              for f, p, c in zip(off["final_label"], off["consensus_posterior"], off["consensus_label"],
                                 strict=True)]
    flags.append(make_flags(off.index, "consensus_disagrees_with_final_label",
                            1.0 - off["consensus_posterior"].to_numpy(), detail))
    return concat_flags(flags)
