"""``evaluate_model``: the trained policy against its reference, as an audit-shaped result.

The result is an :class:`~prefaudit.audit.AuditResult` holding one
:class:`~prefaudit.results.AnalyzerResult` named ``posttrain``, so ``evaluation.json`` has the
audit's flat ``metrics`` map (``posttrain.*``), the report package renders it, and
:func:`prefaudit.gate.apply_policy` gates it. The gate uses only a policy's ``posttrain.*``
rules (:func:`posttrain_policy`): the data rules were decided before training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit.audit import AuditResult, _json_default
from prefaudit.gate import Policy, load_policy
from prefaudit.loaders.report import LoadReport
from prefaudit.posttrain.changes import add_change_metrics, pair_changes
from prefaudit.posttrain.generation import generate_on_prompts, repetition_rate
from prefaudit.results import AnalyzerResult
from prefaudit.schema import to_pairs, validate

EVALUATION_FILE = "evaluation.json"
#: The analyzer name, the prefix of every metric this module writes.
NAME = "posttrain"
#: Most-drifted target prompts shown side by side in the report.
N_DRIFTED = 10
#: Flagged pairs whose texts the evaluation keeps for the report.
N_EXAMPLES = 25
#: The margins analyzer's per-pair column correlated with the chosen log-prob change
#: (length-normalised CHES, Razin et al. 2024).
CHES_COLUMN = "ches_normalized"


def evaluate_model(pairs: pd.DataFrame | None, policy: Any, reference: Any, tokenizer: Any, *,
                   target: Sequence[str] | None = None, max_length: int | None = None,
                   max_new_tokens: int = 64, seed: int = 0, cache_dir: str | Path | None = None,
                   clusters: tuple[pd.Series, dict[int, str]] | None = None, ches: pd.Series | None = None,
                   chat: bool = True, progress: bool = True, load_report: LoadReport | None = None,
                   config: dict[str, Any] | None = None) -> AuditResult:
    """Compare ``policy`` with ``reference`` on preference pairs and on target prompts.

    Parameters
    ----------
    pairs:
        A canonical table (ties dropped, several annotators collapsed by majority) or plain
        rows with ``pair_id``, ``prompt``, ``chosen``, ``rejected`` (held-out pairs above all);
        None or empty skips the pair metrics.
    policy, reference, tokenizer:
        The trained model, its reference and their shared tokenizer
        (:func:`prefaudit.posttrain.load.load_policy_and_reference`).
    target:
        Prompts the model must serve; None skips generation.
    max_length:
        Token budget per prompt + response when scoring pairs (None: no limit).
    max_new_tokens, seed:
        Generation length and the seed of the policy's samples.
    chat:
        Render target prompts with the tokenizer's chat template when it has one
        (:func:`prefaudit.posttrain.generation.prompt_ids`); False encodes them as plain text.
    cache_dir:
        Log-prob cache (None: in memory only).
    clusters:
        ``(cluster per pair_id, label per cluster)`` for the by-cluster table
        (:func:`prefaudit.posttrain.clusters.pair_clusters`).
    ches:
        Per-pair CHES score of the reference, indexed by ``pair_id`` (the margins analyzer's),
        for its rank correlation with the chosen log-prob change.
    load_report, config:
        What the loader reported about ``pairs``, and inputs/options to record; both shown in
        the report.
    """
    res = AnalyzerResult(analyzer=NAME, params={"max_length": max_length, "max_new_tokens": max_new_tokens,
                                                "seed": seed, "chat_template": chat})
    table = _pair_rows(pairs)
    examples: dict[str, dict[str, str]] = {}
    if table is None:
        res.notes.append("no preference pairs given: the pair metrics were not measured.")
    else:
        changes = pair_changes(table, policy, reference, tokenizer, max_length=max_length,
                               cache_dir=cache_dir, progress=progress)
        add_change_metrics(res, changes, clusters=clusters[0] if clusters else None,
                           cluster_labels=clusters[1] if clusters else None, ches=ches)
        res.pair_data = changes
        examples = _examples(table, res)
    if target is None:
        res.notes.append("no target prompts given (--target): length drift, KL and repetition were not "
                         "measured.")
    else:
        _target_metrics(res, generate_on_prompts(policy, reference, tokenizer, list(target),
                                                 max_new_tokens=max_new_tokens, seed=seed, chat=chat),
                        tokenizer)
    sources = [] if table is None or "source" not in table else sorted(map(str, table["source"].unique()))
    summary = {"n_pairs": 0 if table is None else len(table), "n_target_prompts": len(target or []),
               "sources": sources}
    return AuditResult(summary=summary, load_report=load_report or LoadReport(), results={NAME: res},
                       examples=examples,
                       config={"title": "Post-training evaluation", "seed": seed, **(config or {})})


def _pair_rows(pairs: pd.DataFrame | None) -> pd.DataFrame | None:
    if pairs is None or len(pairs) == 0:
        return None
    if "tie" in pairs.columns and "annotator" in pairs.columns:  # a canonical table
        rows = to_pairs(validate(pairs))
        rows = rows[~rows["tie"]]
    else:
        rows = pairs
    return rows.reset_index(drop=True) if len(rows) else None


def _target_metrics(res: AnalyzerResult, gens: list[Any], tokenizer: Any) -> None:
    n_pol = np.array([len(g.policy_ids) for g in gens], dtype=float)
    n_ref = np.array([len(g.reference_ids) for g in gens], dtype=float)
    kl_tokens = sum(g.kl_tokens for g in gens)
    res.add_metric("n_target_prompts", len(gens))
    res.add_metric("length_ratio", n_pol.sum() / n_ref.sum() if n_ref.sum() else None)
    res.add_metric("kl_per_token", sum(g.kl_sum for g in gens) / kl_tokens if kl_tokens else None)
    pol_rep = repetition_rate([g.policy_ids for g in gens])
    ref_rep = repetition_rate([g.reference_ids for g in gens])
    res.add_metric("repetition_rate", pol_rep)
    res.add_metric("reference_repetition_rate", ref_rep)
    res.add_metric("repetition_increase", None if pol_rep is None or ref_rep is None else pol_rep - ref_rep)
    drift = np.array([g.kl_sum / g.kl_tokens if g.kl_tokens else 0.0 for g in gens])
    order = np.lexsort((np.arange(len(gens)), -drift))[:N_DRIFTED]
    res.tables["most_drifted"] = pd.DataFrame({
        "prompt": [gens[i].prompt for i in order],
        "policy_response": [tokenizer.decode(gens[i].policy_ids, skip_special_tokens=True) for i in order],
        "reference_response": [tokenizer.decode(gens[i].reference_ids, skip_special_tokens=True)
                               for i in order],
        "kl_per_token": drift[order],
        "policy_tokens": n_pol[order].astype(int), "reference_tokens": n_ref[order].astype(int)})


def _examples(table: pd.DataFrame, res: AnalyzerResult) -> dict[str, dict[str, str]]:
    worst = res.pair_flags.sort_values("score", ascending=False, kind="mergesort")["pair_id"].astype(str)
    rows = table.assign(pair_id=table["pair_id"].astype(str)).set_index("pair_id")
    return {pid: {"prompt": str(rows.at[pid, "prompt"]), "chosen": str(rows.at[pid, "chosen"]),
                  "rejected": str(rows.at[pid, "rejected"]),
                  "source": str(rows.at[pid, "source"]) if "source" in rows else ""}
            for pid in list(dict.fromkeys(worst))[:N_EXAMPLES]}


def posttrain_policy(policy: Policy | str | Path | None = None) -> Policy:
    """The ``posttrain.*`` rules of a policy (the bundled default when None)."""
    p = policy if isinstance(policy, Policy) else load_policy(policy)
    return Policy(rules=tuple(r for r in p.rules if r.metric.startswith(f"{NAME}.")), name=p.name,
                  description=p.description, source=p.source)


def write_evaluation(result: AuditResult, out_dir: str | Path) -> Path:
    """Write ``evaluation.json`` (the audit's JSON shape) into ``out_dir``; return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / EVALUATION_FILE
    path.write_text(json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def evaluate_after_training(policy: Any, reference: Any, tokenizer: Any, held_out: pd.DataFrame,
                            out_dir: str | Path, *, audit: AuditResult | None = None,
                            target: Sequence[str] | None = None, gate: Policy | str | Path | None = None,
                            max_length: int | None = None, max_new_tokens: int = 64,
                            seed: int = 0) -> dict[str, Any] | None:
    """What ``prefaudit train`` runs after training: :func:`evaluate_model` on the held-out pairs
    (and ``target``), gated by the ``posttrain.*`` rules of ``gate``, written to ``out_dir``
    (``evaluation.json``, ``report.html``); returns the metrics and verdict to record, or None
    when there is nothing to evaluate on. A LoRA policy is evaluated merged (on a copy).
    The audit's prompt clusters (coverage) and per-pair CHES (margins' :data:`CHES_COLUMN`), when
    it has them, feed the by-cluster table and the CHES correlation.
    """
    import copy

    from prefaudit.gate import apply_policy
    from prefaudit.report import write_reports

    if len(held_out) == 0 and not target:
        return None
    model = copy.deepcopy(policy).merge_and_unload() if hasattr(policy, "merge_and_unload") else policy
    was_training = model.training
    model.eval()
    result = evaluate_model(held_out, model, reference, tokenizer, target=target, max_length=max_length,
                            max_new_tokens=max_new_tokens, seed=seed, progress=False,
                            clusters=_audit_column(audit, "coverage", "cluster"),
                            ches=_audit_column(audit, "margins", CHES_COLUMN))
    model.train(was_training)
    verdict = apply_policy(result, posttrain_policy(gate))
    result.verdict = verdict.to_dict()
    write_evaluation(result, out_dir)
    write_reports(result, out_dir, pdf=False)
    return {"metrics": result.metrics, "verdict": verdict.to_dict()}


def _audit_column(audit: AuditResult | None, analyzer: str, column: str) -> Any:
    res = None if audit is None else audit.results.get(analyzer)
    if res is None or res.pair_data is None or column not in res.pair_data.columns:
        return None
    values = res.pair_data[column]
    return (values, {}) if analyzer == "coverage" else values
