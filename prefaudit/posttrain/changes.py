"""Per pair, how training moved the chosen and rejected log-probabilities.

For each untied pair, with log-probs from :func:`prefaudit.scoring.logprobs.score_pairs` under
the policy (pi) and the reference (pi_ref), both on the same tokens:

- ``chosen_change = log pi(chosen) - log pi_ref(chosen)`` (summed over the response tokens),
  likewise ``rejected_change``; ``*_per_token`` divide by the tokens scored;
- ``reward_margin = chosen_change - rejected_change``: the DPO implicit-reward margin over beta;
  the policy *ranks the pair right* (reward accuracy) when it is > 0, so a policy equal to its
  reference scores 0 (every pair is a tie);
- *displacement*: ``chosen_change < 0``, the chosen answer itself became less likely (Razin et
  al. 2024, "Unintentional Unalignment: Likelihood Displacement in DPO", arXiv 2410.08847);
- the cross table: whether the reference and the policy each give the chosen answer the higher
  log-probability, i.e. did DPO fix pairs the reference got wrong, or only widen margins it
  already had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit.figures import Histogram
from prefaudit.posttrain.metrics import MIN_CLUSTER_PAIRS
from prefaudit.results import AnalyzerResult, make_flags


def pair_changes(pairs: pd.DataFrame, policy: Any, reference: Any, tokenizer: Any, *,
                 max_length: int | None = None, cache_dir: str | Path | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """Log-probs under both models and their changes, one row per pair, indexed by ``pair_id``."""
    from prefaudit.scoring.logprobs import score_pairs

    kw = {"max_length": max_length, "cache_dir": cache_dir, "progress": progress}
    ref = score_pairs(pairs, reference, tokenizer, **kw)
    pol = score_pairs(pairs, policy, tokenizer, **kw)
    c_tok = ref["chosen_tokens"].to_numpy(dtype=float)
    r_tok = ref["rejected_tokens"].to_numpy(dtype=float)
    d = pd.DataFrame({
        "reference_chosen_logp": ref["chosen_logp"].to_numpy(),
        "reference_rejected_logp": ref["rejected_logp"].to_numpy(),
        "policy_chosen_logp": pol["chosen_logp"].to_numpy(),
        "policy_rejected_logp": pol["rejected_logp"].to_numpy(),
        "chosen_tokens": c_tok.astype(int), "rejected_tokens": r_tok.astype(int),
    }, index=pd.Index(pairs["pair_id"].astype(str).to_numpy(), name="pair_id"))
    d["chosen_change"] = d["policy_chosen_logp"] - d["reference_chosen_logp"]
    d["rejected_change"] = d["policy_rejected_logp"] - d["reference_rejected_logp"]
    d["chosen_change_per_token"] = d["chosen_change"] / np.where(c_tok > 0, c_tok, np.nan)
    d["rejected_change_per_token"] = d["rejected_change"] / np.where(r_tok > 0, r_tok, np.nan)
    d["reward_margin"] = d["chosen_change"] - d["rejected_change"]
    d["reference_right"] = d["reference_chosen_logp"] > d["reference_rejected_logp"]
    d["policy_right"] = d["policy_chosen_logp"] > d["policy_rejected_logp"]
    return d


def add_change_metrics(result: AnalyzerResult, d: pd.DataFrame, *, clusters: pd.Series | None = None,
                       cluster_labels: dict[int, str] | None = None, ches: pd.Series | None = None) -> None:
    """Metrics, tables, figure and flags of :func:`pair_changes`'s frame, added to ``result``."""
    result.add_metric("n_pairs_evaluated", len(d))
    if len(d) == 0:
        result.notes.append("no untied pairs to evaluate: the pair metrics were not measured.")
        return
    result.add_metric("reward_accuracy", float((d["reward_margin"] > 0).mean()))
    result.add_metric("displacement_share", float((d["chosen_change"] < 0).mean()))
    result.add_metric("median_chosen_logp_change", float(np.nanmedian(d["chosen_change_per_token"])))
    result.add_metric("median_rejected_logp_change", float(np.nanmedian(d["rejected_change_per_token"])))
    _cross_table(result, d)
    if clusters is not None:
        _by_cluster(result, d, clusters, cluster_labels or {})
    if ches is not None:
        _ches_correlation(result, d, ches)
    change = d["chosen_change_per_token"].to_numpy(dtype=float)
    finite = change[np.isfinite(change)]
    if len(finite):
        counts, edges = np.histogram(finite, bins=30)
        result.add_figure("chosen_logp_change_per_token", Histogram(
            edges=edges, counts={"pairs": counts}, xlabel="change of the chosen log-prob per token (nats)"))
    hit = d.index[d["chosen_change"] < 0]
    result.pair_flags = make_flags(
        hit, "displaced", -d.loc[hit, "chosen_change_per_token"].fillna(0.0).to_numpy(),
        [f"chosen log-prob {c:+.3f} nats ({t:+.4f}/token), rejected {r:+.3f} nats"
         for c, t, r in d.loc[hit, ["chosen_change", "chosen_change_per_token",
                                    "rejected_change"]].to_numpy()])


def _cross_table(result: AnalyzerResult, d: pd.DataFrame) -> None:
    ref, pol = d["reference_right"].to_numpy(bool), d["policy_right"].to_numpy(bool)
    table = pd.DataFrame({"policy right": [int((ref & pol).sum()), int((~ref & pol).sum())],
                          "policy wrong": [int((ref & ~pol).sum()), int((~ref & ~pol).sum())]},
                         index=["reference right", "reference wrong"])
    result.tables["reference_x_policy"] = table
    n_wrong, n_right = int((~ref).sum()), int(ref.sum())
    result.add_metric("reference_wrong_fixed_share", (~ref & pol).sum() / n_wrong if n_wrong else None)
    result.add_metric("reference_right_broken_share", (ref & ~pol).sum() / n_right if n_right else None)


def _by_cluster(result: AnalyzerResult, d: pd.DataFrame, clusters: pd.Series, labels: dict[int, str]) -> None:
    cl = clusters.copy()
    cl.index = cl.index.astype(str)
    cl = cl.reindex(d.index)
    if cl.isna().all():
        result.notes.append("no prompt cluster is known for the evaluated pairs: the by-cluster table was "
                            "skipped.")
        return
    rows = []
    for c, g in d.groupby(cl.to_numpy(), sort=True):
        rows.append({"cluster": int(c), "label": labels.get(int(c), ""), "n_pairs": len(g),
                     "reward_accuracy": float((g["reward_margin"] > 0).mean()),
                     "displacement_share": float((g["chosen_change"] < 0).mean()),
                     "median_chosen_logp_change": float(np.nanmedian(g["chosen_change_per_token"]))})
    table = pd.DataFrame(rows)
    result.tables["by_cluster"] = table
    big = table[table["n_pairs"] >= MIN_CLUSTER_PAIRS]
    result.add_metric("min_cluster_reward_accuracy",
                      float(big["reward_accuracy"].min()) if len(big) else None)
    result.add_metric("max_cluster_displacement_share",
                      float(big["displacement_share"].max()) if len(big) else None)


def _ches_correlation(result: AnalyzerResult, d: pd.DataFrame, ches: pd.Series) -> None:
    from scipy.stats import spearmanr

    s = ches.copy()
    s.index = s.index.astype(str)
    x = s.reindex(d.index).to_numpy(dtype=float)
    y = d["chosen_change_per_token"].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    rho = None
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        rho = float(spearmanr(x[ok], y[ok]).statistic)
    result.add_metric("ches_chosen_change_spearman", rho)
