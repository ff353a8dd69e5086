"""DPO on a pair table: encoding, sequence log-probs, two training back ends, evaluation.

Losses TRL's ``DPOTrainer`` implements (``sigmoid``, ``ipo``, ``robust``) train with TRL
(:func:`train_trl`); the others (``cdpo``, ``length_reg``, ``cpo``, see
:mod:`prefaudit.train.losses`) train with a compact loop of our own on transformers
(:func:`train_own`). Both see the pairs encoded by TRL's own rules
(:func:`prefaudit.scoring.encoding.encode_pairs` with ``encoding="trl"``; conversational
tables go to TRL as messages, :func:`~prefaudit.scoring.encoding.trl_columns`), so
:func:`preference_metrics`, the own loop and the margins analyzer measure the same sequences
TRL trains on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from prefaudit.scoring.encoding import context_token, encode_pairs, trl_columns
from prefaudit.train.config import PRECISIONS, TRL_LOSSES, TrainConfig  # noqa: F401  (re-exported)
from prefaudit.train.losses import preference_loss


def sequence_logps(model: Any, sequences: list[tuple[tuple[int, ...], tuple[int, ...]]],
                   pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each ``(prompt ids, response ids)`` response, and its token count.

    Differentiable when called with gradients enabled. Sequences are right-padded; as in TRL,
    the first token of a sequence has no prediction and is not scored.
    """
    width = max(max(len(p) + len(r) for p, r in sequences), 2)
    device = next(model.parameters()).device
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(sequences), width), dtype=torch.long)
    resp = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, (prompt, response) in enumerate(sequences):
        n = len(prompt) + len(response)
        ids[i, :n] = torch.tensor(prompt + response, dtype=torch.long)
        attn[i, :n] = 1
        resp[i, len(prompt):n] = True
    ids, attn, resp = ids.to(device), attn.to(device), resp.to(device)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    target_mask = resp[:, 1:]
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * target_mask).sum(dim=1), target_mask.sum(dim=1)


def _pair_logps(model: Any, tokenizer: Any, pairs: pd.DataFrame, max_length: int) -> tuple[torch.Tensor, ...]:
    encoded = encode_pairs(tokenizer, pairs, max_length=max_length, encoding="trl")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else context_token(tokenizer)
    lc, nc = sequence_logps(model, [(e.prompt, e.chosen) for e in encoded], pad)
    lr, nr = sequence_logps(model, [(e.prompt, e.rejected) for e in encoded], pad)
    return lc, lr, nc, nr


@torch.no_grad()
def preference_metrics(model: Any, ref_model: Any, tokenizer: Any, pairs: pd.DataFrame, *, beta: float = 0.1,
                       max_length: int = 512, batch_size: int = 16) -> dict[str, float]:
    """How the policy ranks each pair relative to the reference.

    ``reward_accuracy``: share of pairs whose implicit reward beta*(logp - ref) is strictly
    higher for the chosen answer (0 before training, when policy == reference);
    ``dpo_loss``: mean sigmoid DPO loss (log 2 before training); ``mean_margin``: mean
    implicit-reward margin chosen - rejected, in nats times beta.
    """
    was_training = model.training
    model.eval()
    h_all = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs.iloc[start:start + batch_size]
        lc, lr, _, _ = _pair_logps(model, tokenizer, chunk, max_length)
        rc, rr, _, _ = _pair_logps(ref_model, tokenizer, chunk, max_length)
        h_all.append(((lc - rc) - (lr - rr)).cpu())
    model.train(was_training)
    h = torch.cat(h_all).double()
    return {"reward_accuracy": float((h > 0).double().mean()),
            "dpo_loss": float(torch.nn.functional.softplus(-beta * h).mean()),
            "mean_margin": float((beta * h).mean()), "n_pairs": int(len(h))}


def train_own(model: Any, ref_model: Any, tokenizer: Any, pairs: pd.DataFrame,
              config: TrainConfig) -> list[dict]:
    """Train ``model`` in place with :func:`~prefaudit.train.losses.preference_loss`; return the step log.

    Batches are drawn from seeded permutations of ``pairs`` (epoch after epoch); AdamW at a
    constant learning rate. The reference log-probs are computed once up front.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    need_ref = config.loss != "cpo"
    ref = _reference_logps(ref_model, tokenizer, pairs, config) if need_ref else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    model.train()
    order = np.empty(0, dtype=int)
    log = []
    for step in range(1, config.max_steps + 1):
        if len(order) < config.batch_size:
            order = np.concatenate([order, rng.permutation(len(pairs))])
        idx, order = order[:config.batch_size], order[config.batch_size:]
        with config.autocast():
            lc, lr, nc, nr = _pair_logps(model, tokenizer, pairs.iloc[idx], config.max_length)
        loss_per_pair = preference_loss(
            config.loss, logp_chosen=lc, logp_rejected=lr,
            ref_chosen=None if ref is None else ref[0][idx],
            ref_rejected=None if ref is None else ref[1][idx],
            len_chosen=nc, len_rejected=nr, beta=config.beta, eps=config.eps, alpha=config.alpha,
            nll_weight=config.nll_weight)
        loss = loss_per_pair.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        entry = {"step": step, "loss": float(loss.detach())}
        if ref is not None:
            h = ((lc - ref[0][idx]) - (lr - ref[1][idx])).detach()
            entry.update({"rewards/accuracies": float((h > 0).float().mean()),
                          "rewards/margins": float(config.beta * h.mean())})
        log.append(entry)
    return log


@torch.no_grad()
def _reference_logps(ref_model: Any, tokenizer: Any, pairs: pd.DataFrame,
                     config: TrainConfig) -> tuple[torch.Tensor, ...]:
    parts = [_pair_logps(ref_model, tokenizer, pairs.iloc[s:s + config.batch_size], config.max_length)[:2]
             for s in range(0, len(pairs), config.batch_size)]
    device = next(ref_model.parameters()).device
    return (torch.cat([p[0] for p in parts]).to(device), torch.cat([p[1] for p in parts]).to(device))


def train_trl(model: Any, ref_model: Any, tokenizer: Any, pairs: pd.DataFrame, config: TrainConfig,
              output_dir: str) -> list[dict]:
    """Train ``model`` in place with TRL's ``DPOTrainer``; return TRL's log history.

    ``robust`` passes ``eps`` as TRL's ``label_smoothing`` (its flip rate). The reference is
    always passed explicitly (TRL 1.16 would otherwise try to reload it from the hub). The
    precision is ``config.precision`` (TRL's own default would be bf16 where the hardware has
    it) and gradient checkpointing is off; afterwards ``model`` is handed back plain, as it is
    saved: the ``forward`` patches (accelerate's autocast, TRL's fused LM head) and the
    input-gradient hooks the trainer registered are removed (from the reference too), so what
    the caller measures is what reloads from disk.
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=output_dir, per_device_train_batch_size=config.batch_size, max_steps=config.max_steps,
        learning_rate=config.learning_rate, lr_scheduler_type="constant", beta=config.beta,
        loss_type=[TRL_LOSSES[config.loss]], label_smoothing=config.eps if config.loss == "robust" else 0.0,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
        max_length=config.max_length, dataloader_num_workers=0, seed=config.seed, data_seed=config.seed,
        disable_tqdm=True, bf16=config.precision == "bf16", fp16=False, activation_checkpointing=False)
    data = Dataset.from_dict(trl_columns(pairs))
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=data,
                         processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the step log goes to run.log, not stdout
    trainer.train()
    _unwrap_in_place(trainer, model, ref_model)
    return [dict(e) for e in trainer.state.log_history]


def _unwrap_in_place(trainer: Any, *models: Any) -> None:
    """Undo what training attached to ``models``: patched ``forward`` methods and input-grad hooks.

    Accelerate wraps ``forward`` in autocast under mixed precision and TRL 1.16 patches in a fused
    LM head (on the policy and the reference); both live in the instance's ``__dict__`` over the
    class's own ``forward``, so deleting them restores the plain model.
    """
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    for model in models:
        if getattr(model, "is_activation_checkpointing", False):
            model.activation_checkpointing_disable()
        for module in model.modules():
            for attr in ("forward", "_original_forward"):
                module.__dict__.pop(attr, None)
            for key, hook in list(module._forward_hooks.items()):  # enable_input_require_grads' hooks
                if getattr(hook, "__name__", "") == "make_inputs_require_grads":
                    del module._forward_hooks[key]
