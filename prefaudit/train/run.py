"""``train_dpo``: audit, gate, then DPO training that uses what the audit found.

The audit and the policy gate run first; on FAIL training is refused (:class:`GateRefused`)
unless ``force=True``, which is recorded. The audit then shapes the training data and loss:

- ``drop_flags``: drop pairs the audit flagged, by flag reason (``"all"`` drops any flagged pair);
- ``label_noise="audit"``: ``robust`` (rDPO) and ``cdpo`` take the noise rate from the audit's
  ``agreement.flip_rate`` (the expected share of final labels that are the wrong way round);
- ``length_balance``: keep a seeded length-balanced subsample
  (:func:`prefaudit.stats.length_balance.length_balanced_sample`), so "the longer answer
  wins" no longer explains the labels;
- ``loss``: ``sigmoid``, ``ipo``, ``robust``, ``cdpo``, ``length_reg`` (R-DPO) or ``cpo``
  (for a reference that prefers the rejected answer on most pairs).

The output folder gets the trained model and tokenizer, ``prefaudit_train.json`` (options,
the data and audit hashes, the verdict, whether the gate was forced, what was dropped, the
metrics before and after), ``run.log``, and the audit itself under ``audit/``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit import __version__
from prefaudit.audit import AuditResult, audit
from prefaudit.errors import ConfigError
from prefaudit.gate import Policy, Verdict, apply_policy, load_policy
from prefaudit.schema import validate
from prefaudit.selection import check_audit, select_pairs
from prefaudit.train.dpo import TrainConfig, preference_metrics, train_own, train_trl

METADATA_FILE = "prefaudit_train.json"
LOG_FILE = "run.log"


class GateRefused(Exception):
    """Training was refused because the gate's verdict is FAIL (or WARN under ``strict``)."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__("the gate refused training:\n  " + "\n  ".join(verdict.reasons))


@dataclass
class TrainRun:
    """What :func:`train_dpo` did: where it saved, the verdict, and the recorded metadata."""

    output_dir: Path
    verdict: Verdict
    forced: bool
    metadata: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)


def train_dpo(table: pd.DataFrame, model: str | Any, output_dir: str | Path, *, tokenizer: Any = None,
              policy: Policy | str | Path | None = None, force: bool = False, strict: bool = False,
              config: TrainConfig | None = None, label_noise: float | str | None = None,
              drop_flags: tuple[str, ...] | list[str] = (), length_balance: bool = False,
              margin_drop: tuple[float, float] | None = None, ches_drop: float | None = None,
              holdout: float = 0.0, lora: bool = False, analyzers: list[str] | None = None,
              audit_options: dict[str, dict[str, Any]] | None = None, audit_result: AuditResult | None = None,
              cache_dir: str | Path | None = None, target: list[str] | None = None) -> TrainRun:
    """Audit ``table``, gate it, and train ``model`` with DPO on what passes.

    Parameters
    ----------
    table:
        A canonical pair table (:func:`prefaudit.load`). Multi-annotator tables are collapsed
        to one pair per comparison by majority; ties are not trained on.
    model:
        A local model folder, ``.gguf`` file, ``"smollm2"`` (see
        :func:`prefaudit.scoring.models.resolve_model_path`) or a loaded causal LM (then pass
        ``tokenizer``). The reference model is a frozen copy of it.
    policy, force, strict:
        The gate policy (default: the bundled one); ``force`` trains despite FAIL and records
        it; ``strict`` refuses on WARN too.
    config:
        Loss and optimisation options (:class:`~prefaudit.train.dpo.TrainConfig`).
    label_noise:
        The noise rate of ``robust``/``cdpo``: a number, or ``"audit"`` (the default for those
        losses) for the audit's ``agreement.flip_rate``.
    drop_flags:
        Flag reasons whose pairs are dropped (``"all"``: any flagged pair).
    length_balance:
        Train on a seeded length-balanced subsample.
    margin_drop:
        ``(low, high)``: drop these fractions of pairs with the lowest and highest reference
        margins (:func:`prefaudit.analyzers.margins.select_by_margin`); the audit then runs the
        ``margins`` analyzer with ``model`` as the reference unless options name another.
    ches_drop:
        Drop this fraction of pairs with the highest CHES, the likelihood-displacement risk
        (:func:`prefaudit.analyzers.margins.select_by_ches`); runs margins as ``margin_drop`` does.
    holdout:
        Fraction of pairs (seeded) kept out of training to measure preference accuracy on.
    lora:
        Train LoRA adapters (peft) instead of all weights; only the adapters are saved.
    audit_result:
        A precomputed audit of ``table`` (skips re-running the analyzers), e.g. from
        :func:`prefaudit.audit.read_audit`; its ``content_sha256`` must match ``table``.
    target:
        Prompts the model must serve: after training, ``prefaudit evaluate`` runs on the held-out
        pairs and these (:func:`prefaudit.posttrain.evaluate.evaluate_after_training`).
    """
    config = config or TrainConfig()
    backend = config.resolved_backend()
    table = validate(table)
    if ches_drop is not None and not 0 <= ches_drop < 1:
        raise ConfigError(f"ches_drop must be a fraction in [0, 1), got {ches_drop}")
    if (margin_drop is not None or ches_drop is not None) and audit_result is None:
        analyzers, audit_options = _with_margins(analyzers, audit_options, model, tokenizer)
    if audit_result is not None:
        check_audit(audit_result, table, drop_flags)
    result = audit_result or audit(table, analyzers, seed=config.seed, options=audit_options)
    verdict = apply_policy(result, policy if isinstance(policy, Policy) else load_policy(policy))
    refused = verdict.exit_code(strict) != 0
    if refused and not force:
        raise GateRefused(verdict)
    forced = refused and force

    eps = _noise_rate(config.loss, label_noise, result)
    config = TrainConfig(**{**asdict(config), "eps": eps})
    pairs, dropped = select_pairs(table, result, drop_flags=drop_flags, length_balance=length_balance,
                                  margin_drop=margin_drop, ches_drop=ches_drop, seed=config.seed)
    train_pairs, held_out = _split(pairs, holdout, config.seed)
    if len(train_pairs) == 0:
        raise ConfigError("no pairs left to train on after dropping ties, flagged pairs and the holdout")

    policy_model, tok = _load_model(model, tokenizer, cache_dir)
    ref_model = copy.deepcopy(policy_model).eval()
    ref_model.requires_grad_(False)
    policy_model.requires_grad_(True)
    if lora:
        policy_model = _with_lora(policy_model, config.seed)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_lines = [f"gate: {verdict.status.upper()} (policy {verdict.policy})", *verdict.reasons]
    if forced:
        log_lines.append("FORCED: training despite the gate's verdict (--force)")
    log_lines.append(f"pairs: {len(train_pairs)} train, {len(held_out)} held out, dropped {dropped}")
    log_lines.append(f"loss {config.loss} (backend {backend}), beta {config.beta}, eps {config.eps:.4g}")

    before = _evaluate(policy_model, ref_model, tok, held_out, config)
    if backend == "trl":
        history = train_trl(policy_model, ref_model, tok, train_pairs, config, str(out / "trl"))
    else:
        history = train_own(policy_model, ref_model, tok, train_pairs, config)
    after = _evaluate(policy_model, ref_model, tok, held_out, config)
    log_lines += [json.dumps(e, default=float) for e in history]

    from prefaudit.posttrain.evaluate import evaluate_after_training

    evaluation = evaluate_after_training(policy_model, ref_model, tok, held_out, out / "evaluation",
                                         audit=result, target=target, gate=policy,
                                         max_length=config.max_length, seed=config.seed)
    policy_model.save_pretrained(out)
    tok.save_pretrained(out)
    result.verdict = verdict.to_dict()
    result.write(out / "audit")
    metadata = {
        "prefaudit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "forced": forced,
        "verdict": verdict.to_dict(),
        "data_sha256": result.summary.get("content_sha256"),
        "audit_sha256": _audit_hash(result),
        "options": {**asdict(config), "backend": backend, "label_noise": label_noise,
                    "drop_flags": list(drop_flags), "length_balance": length_balance,
                    "margin_drop": list(margin_drop) if margin_drop else None, "ches_drop": ches_drop,
                    "holdout": holdout,
                    "lora": lora, "model": model if isinstance(model, str) else type(model).__name__},
        "pairs": {"trained": len(train_pairs), "held_out": len(held_out), "dropped": dropped},
        "held_out_before": before,
        "held_out_after": after,
        "evaluation": evaluation,
        "final_train_loss": next((e["loss"] for e in reversed(history) if "loss" in e), None),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=float) + "\n", encoding="utf-8")
    (out / LOG_FILE).write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    return TrainRun(out, verdict, forced, metadata, history)


def _noise_rate(loss: str, label_noise: float | str | None, result: AuditResult) -> float:
    if loss not in ("robust", "cdpo"):
        if label_noise not in (None, "audit", 0, 0.0):
            raise ConfigError(f"--label-noise applies to the robust and cdpo losses, not {loss!r}")
        return 0.0
    if label_noise is None or label_noise == "audit":
        rate = result.metrics.get("agreement.flip_rate")
        if rate is None:
            raise ConfigError(f"loss {loss!r} with the audit's flip rate: agreement.flip_rate was not "
                              "measured (it needs several annotators per pair); give --label-noise RATE")
    else:
        rate = float(label_noise)
    if not 0.0 <= rate < 0.5:  # at 0.5 or above both losses would train toward the rejected answer
        raise ConfigError(f"label-noise rate for {loss!r} must be in [0, 0.5), got {rate:.4g}")
    return float(rate)


def _with_margins(analyzers: list[str] | None, options: dict[str, dict[str, Any]] | None, model: Any,
                  tokenizer: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    from prefaudit.audit import DEFAULT_ANALYZERS

    names = list(analyzers or DEFAULT_ANALYZERS)
    names += [] if "margins" in names else ["margins"]
    opts = {k: dict(v) for k, v in (options or {}).items()}
    reference = str(model) if isinstance(model, (str, Path)) else (model, tokenizer)
    opts.setdefault("margins", {}).setdefault("reference_model", reference)
    return names, opts


def _split(pairs: pd.DataFrame, holdout: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    n_out = int(round(holdout * len(pairs)))
    order = np.random.default_rng(seed).permutation(len(pairs))
    return (pairs.iloc[np.sort(order[n_out:])].reset_index(drop=True),
            pairs.iloc[np.sort(order[:n_out])].reset_index(drop=True))


def _evaluate(model: Any, ref: Any, tok: Any, pairs: pd.DataFrame,
              config: TrainConfig) -> dict[str, float] | None:
    if len(pairs) == 0:
        return None
    return preference_metrics(model, ref, tok, pairs, beta=config.beta, max_length=config.max_length,
                              batch_size=config.batch_size)


def _load_model(model: str | Any, tokenizer: Any, cache_dir: str | Path | None) -> tuple[Any, Any]:
    if not isinstance(model, (str, Path)):
        if tokenizer is None:
            raise ConfigError("train_dpo: pass the tokenizer with an in-memory model")
        return model, tokenizer
    from prefaudit.scoring.models import load_causal_lm

    # Weights in fp32 on every device: TrainConfig.precision alone decides the arithmetic.
    loaded, tok = load_causal_lm(str(model), dtype="float32", cache_dir=cache_dir, role="--model")
    tok = tokenizer or tok
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return loaded, tok


def _with_lora(model: Any, seed: int) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def _audit_hash(result: AuditResult) -> str:
    """SHA-256 of the audit's metrics (names and values), which the gate decided on."""
    text = json.dumps(result.metrics, sort_keys=True, default=float)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
