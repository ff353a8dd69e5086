"""Sequence log-probabilities of responses given their prompts, and CHES, under a causal LM.

:func:`score_pairs` returns, for each (prompt, chosen, rejected) pair, the summed log-prob of
each response's tokens given the prompt (``chosen_logp``, ``rejected_logp``), the number of
tokens scored, how many tokens truncation removed, and the pair's CHES score.

Tokenisation is :mod:`prefaudit.scoring.encoding`: by default TRL's ``DPOTrainer`` encoding,
so these are the reference log-probs DPO trains with (``encoding="natural"`` for the
text-reading one). A response token is predicted at the position before it; a pair whose
prompt encodes to no tokens (TRL text encoding, a tokenizer without BOS) has no prediction for
the first token of each response, which is then not scored, as in TRL.

CHES (Razin et al. 2024, "Unintentional Unalignment: Likelihood Displacement in Direct
Preference Optimization", arXiv 2410.08847): with ``H+`` and ``H-`` the sums of the
reference's last hidden states (what the LM head reads) at the positions that predict the
chosen / rejected tokens (the last prompt token through the second-to-last response token),
``ches = <H+, H-> - ||H+||^2`` and ``ches_normalized`` the same with ``H+ / |y+|`` and
``H- / |y-|`` (``|y|`` the tokens scored; NaN for an empty response). In the paper's
first-order analysis a DPO step on a pair changes the chosen log-probability by a term
proportional to ``-CHES``: the higher the score, the more the step pushes the chosen response
*down* (likelihood displacement), and a positive score means the push on chosen from the
rejected side outweighs the pull from its own gradient. The sums come from the same forward
pass as the log-probs, in float64.

Speed (:func:`score_encoded`): each pair is packed into one row ``prompt | chosen | rejected``
with a 4-D attention mask that hides the two responses from each other and position ids that
restart after the prompt for both, so the shared prompt is computed once. Rows are sorted by
length and grouped by a token budget (padded tokens per forward pass), the LM head and
``log_softmax`` run only on the positions that predict response tokens (for models whose
head is a plain linear layer), under ``torch.inference_mode``. The batches are planned over
all pairs, whatever is cached, and a batch is skipped only when all its pairs are cached, so a
resumed run computes every number in the same batch as a fresh run (bit-identical results).
Results go to the :class:`~prefaudit.scoring.logprob_cache.LogprobCache` after every batch.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefaudit.errors import ConfigError
from prefaudit.scoring.encoding import EncodedPair, context_token, encode_pairs
from prefaudit.scoring.engines import as_engine, fill_logprob_cache
from prefaudit.scoring.logprob_cache import VALUES, LogprobCache, pair_key

#: Columns of the frame :func:`score_pairs` returns.
SCORE_COLUMNS: tuple[str, ...] = (
    "chosen_logp", "rejected_logp", "prompt_tokens", "chosen_tokens", "rejected_tokens",
    "prompt_truncated", "chosen_truncated", "rejected_truncated", "ches", "ches_normalized",
)
#: Config attributes that mean the logits are more than ``lm_head(hidden)`` (then the full
#: model forward is used instead of applying the head to the response positions only).
_HEAD_MODIFIERS: tuple[str, ...] = ("final_logit_softcapping", "logit_scale", "logits_scaling",
                                    "output_multiplier_scale")
__all__ = ["SCORE_COLUMNS", "EncodedPair", "encode_pairs", "plan_batches", "score_encoded", "score_pairs"]


def plan_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group row indices into batches: longest rows first, each batch padded to its first row's
    length and holding as many rows as fit in ``token_budget`` padded tokens (at least one).

    The plan depends only on the lengths; :func:`score_encoded` plans over all pairs (cached
    or not), so a pair is always scored in the same batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def default_token_budget(device_type: str) -> int:
    """Padded tokens per forward pass: 4,096 on CPU, 32,768 on a GPU."""
    return 32_768 if device_type == "cuda" else 4_096


def _plain_head(model: Any) -> bool:
    import torch

    cfg = model.config
    if any(getattr(cfg, a, None) not in (None, 1, 1.0) for a in _HEAD_MODIFIERS):
        return False
    return isinstance(model.get_output_embeddings(), torch.nn.Linear) and model.base_model is not model


def _check_attention(model: Any, encoded: list[EncodedPair]) -> None:
    cfg = model.config
    impl = str(getattr(cfg, "_attn_implementation", "") or "")
    if impl.startswith("flash"):
        raise ConfigError(f"the reference model uses {impl}, which ignores the packed 4-D attention "
                          "mask; load it with attn_implementation='sdpa'")
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", True):
        longest = max((len(e.prompt) + max(len(e.chosen), len(e.rejected)) for e in encoded), default=0)
        if longest > window:
            raise ConfigError(f"a sequence has {longest} tokens, more than the model's sliding attention "
                              f"window ({window}); pass max_length <= {window}")


def _forward_batch(model: Any, rows: list[EncodedPair], pad_id: int, plain_head: bool,
                   ches: bool = True) -> np.ndarray:
    """Scores of each packed row, shape ``(len(rows), 4)``: :data:`~prefaudit.scoring.logprob_cache.VALUES`
    (chosen and rejected summed log-probs, CHES, normalised CHES; ``ches=False`` leaves the
    CHES columns NaN, which ``benchmarks/bench_logprobs.py`` uses to measure their cost)."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    width = max(max(e.row_length for e in rows), 1)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    seg = np.full((len(rows), width), -1, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    src_b, src_t, tgt, seq = [], [], [], []
    for b, e in enumerate(rows):
        p, c, r = len(e.prompt), len(e.chosen), len(e.rejected)
        ids[b, :p + c + r] = e.prompt + e.chosen + e.rejected
        seg[b, :p], seg[b, p:p + c], seg[b, p + c:p + c + r] = 0, 1, 2
        pos[b, :p + c + r] = np.r_[np.arange(p), np.arange(p, p + c), np.arange(p, p + r)]
        # token k of a response is predicted at the position before it; the first token of
        # both responses is predicted by the last prompt token (not at all without a prompt).
        for start, n, which, toks in ((p, c, 0, e.chosen), (p + c, r, 1, e.rejected)):
            first = 0 if p else 1
            if n > first:
                src_b += [b] * (n - first)
                src_t += ([p - 1] if p else []) + list(range(start, start + n - 1))
                tgt += list(toks[first:])
                seq += [2 * b + which] * (n - first)
    seg_t = torch.from_numpy(seg)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allow = causal & ((seg_t[:, None, :] == 0) | (seg_t[:, None, :] == seg_t[:, :, None]))
    allow &= seg_t[:, None, :] >= 0
    allow |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty rows
    mask = torch.zeros(allow.shape, dtype=dtype).masked_fill_(~allow, torch.finfo(dtype).min)
    inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": mask[:, None].to(device),
              "position_ids": torch.from_numpy(pos).to(device)}
    sel_b, sel_t = torch.tensor(src_b, device=device, dtype=torch.long), torch.tensor(src_t, device=device,
                                                                                      dtype=torch.long)
    if plain_head:
        hidden = model.base_model(**inputs).last_hidden_state[sel_b, sel_t]
        logits = model.get_output_embeddings()(hidden)
        hidden = hidden if ches else None
    else:
        out = model(**inputs, output_hidden_states=ches)
        logits, hidden = out.logits[sel_b, sel_t], out.hidden_states[-1][sel_b, sel_t] if ches else None
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_lp = logp.gather(1, torch.tensor(tgt, device=device, dtype=torch.long)[:, None])[:, 0]
    seq_t = torch.tensor(seq, device=device, dtype=torch.long)
    sums = torch.zeros(2 * len(rows), dtype=torch.float64, device=device)
    sums.index_add_(0, seq_t, token_lp.double())
    if hidden is None:
        nan = torch.full((len(rows), 2), torch.nan, dtype=torch.float64, device=device)
        return torch.cat([sums.view(-1, 2), nan], dim=1).cpu().numpy()
    h_sum = torch.zeros(2 * len(rows), hidden.shape[-1], dtype=torch.float64, device=device)
    h_sum.index_add_(0, seq_t, hidden.double())
    counts = torch.bincount(seq_t, minlength=2 * len(rows)).double()
    h_pos, h_neg = h_sum[0::2], h_sum[1::2]
    n_pos, n_neg = counts[0::2, None], counts[1::2, None]
    ches = (h_pos * h_neg).sum(1) - (h_pos * h_pos).sum(1)
    u_pos, u_neg = h_pos / n_pos, h_neg / n_neg
    ches_norm = (u_pos * u_neg).sum(1) - (u_pos * u_pos).sum(1)
    return torch.stack([sums[0::2], sums[1::2], ches, ches_norm], dim=1).cpu().numpy()


@dataclass(frozen=True)
class ScoredPairs:
    """What :func:`score_encoded` returns: ``values`` of shape ``(n, 4)`` with columns
    :data:`~prefaudit.scoring.logprob_cache.VALUES`, and the damaged cache lines discarded
    (and recomputed) on the way."""

    values: np.ndarray
    cache_lines_discarded: int = 0


def score_encoded(model: Any, tokenizer: Any, encoded: list[EncodedPair], *,
                  token_budget: int | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True,
                  on_batch: Callable[[int, int], None] | None = None) -> ScoredPairs:
    """Scores of already-encoded pairs (:class:`ScoredPairs`).

    Batches whose pairs are all in the cache are not recomputed; the others are scored batch
    by batch and appended to the cache after each batch, then ``on_batch(pairs_done,
    pairs_to_do)`` is called (a callback that raises stops the run; the next run resumes from
    the cache with bit-identical numbers).
    """
    import torch
    from tqdm.auto import tqdm

    _check_attention(model, encoded)
    cache = LogprobCache.for_model(model, cache_dir)
    keys = [pair_key(e.prompt, e.chosen, e.rejected) for e in encoded]
    device = next(model.parameters()).device
    budget = token_budget or default_token_budget(device.type)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else context_token(tokenizer)
    plain_head = _plain_head(model)
    batches = [b for b in plan_batches([e.row_length for e in encoded], budget)
               if any(keys[i] not in cache for i in b)]
    n_todo = sum(len(b) for b in batches)
    values = np.full((len(encoded), len(VALUES)), np.nan, dtype=np.float64)
    done, n_tokens, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=n_todo, unit="pair", desc="reference log-probs", disable=not progress or None)
    try:
        with torch.inference_mode():
            for batch in batches:
                rows = [encoded[i] for i in batch]
                values[batch] = _forward_batch(model, rows, pad_id, plain_head)
                cache.put_many((keys[i], values[i]) for i in batch if keys[i] not in cache)
                done += len(batch)
                n_tokens += sum(e.row_length for e in rows)
                bar.update(len(batch))
                bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s")
                if on_batch is not None:
                    on_batch(done, n_todo)
    finally:
        bar.close()
    computed = {i for b in batches for i in b}
    for i, key in enumerate(keys):
        if i not in computed:
            values[i] = cache.get(key)
    return ScoredPairs(values, cache.discarded)


def score_pairs(pairs: pd.DataFrame, model: Any, tokenizer: Any, *, max_length: int | None = None,
                token_budget: int | None = None, cache_dir: str | Path | None = None,
                encoding: str = "trl", separator: str = " ", add_eos: bool = True, progress: bool = True,
                on_batch: Callable[[int, int], None] | None = None, engine: Any = None,
                load: Callable[[], tuple[Any, Any]] | None = None) -> pd.DataFrame:
    """Log-probs and CHES of each pair's chosen and rejected response given its prompt.

    Parameters
    ----------
    pairs:
        Rows with ``prompt``, ``chosen``, ``rejected`` (and, for chat data, the ``*_messages``
        columns of the canonical table).
    model, tokenizer:
        Any transformers causal LM and its tokenizer (see :func:`prefaudit.scoring.models.load_reference`).
    max_length:
        Most tokens per prompt + response; longer ones are truncated and counted (None: no limit).
    token_budget:
        Padded tokens per forward pass (default :func:`default_token_budget`).
    cache_dir:
        Folder of the on-disk cache (None: nothing is cached on disk).
    encoding, separator, add_eos:
        Tokenisation (:func:`prefaudit.scoring.encoding.encode_pairs`): ``"trl"`` (default,
        what DPO trains on) or ``"natural"`` (``separator`` and ``add_eos`` apply to it).
    progress:
        Show a progress bar with tokens/s (on a terminal).
    on_batch:
        Called as ``on_batch(pairs_done, pairs_to_do)`` after each batch is cached.
    engine, load:
        None or ``"local"``: score here. ``"ray"`` or a :class:`~prefaudit.scoring.engines.Engine`:
        the pairs missing from the cache are scored on Ray actors and cached first
        (:func:`~prefaudit.scoring.engines.fill_logprob_cache`; ``load`` builds the model in
        an actor, None ships ``model`` and ``tokenizer``), then read back as below.

    Returns
    -------
    A frame with :data:`SCORE_COLUMNS`, indexed like ``pairs``: ``*_logp`` are summed natural-log
    probabilities of the response tokens kept, ``*_tokens`` the tokens kept, ``*_truncated``
    the tokens truncation removed, ``ches`` / ``ches_normalized`` the CHES scores (module
    docstring). ``frame.attrs["cache_lines_discarded"]`` counts damaged cache lines that were
    dropped and recomputed.
    """
    encoded = encode_pairs(tokenizer, pairs, max_length=max_length, encoding=encoding,
                           separator=separator, add_eos=add_eos)
    with tempfile.TemporaryDirectory() as tmp:
        if as_engine(engine).kind == "ray":
            # the driver reads the results back from it
            cache_dir = cache_dir if cache_dir is not None else tmp
            fill_logprob_cache(as_engine(engine), model, tokenizer, encoded, cache_dir,
                               token_budget=token_budget, load=load, on_batch=on_batch)
        scored = score_encoded(model, tokenizer, encoded, token_budget=token_budget, cache_dir=cache_dir,
                               progress=progress, on_batch=on_batch)
    v = scored.values
    frame = pd.DataFrame({
        "chosen_logp": v[:, 0], "rejected_logp": v[:, 1],
        "prompt_tokens": [len(e.prompt) for e in encoded],
        "chosen_tokens": [len(e.chosen) for e in encoded],
        "rejected_tokens": [len(e.rejected) for e in encoded],
        "prompt_truncated": [e.prompt_truncated for e in encoded],
        "chosen_truncated": [e.chosen_truncated for e in encoded],
        "rejected_truncated": [e.rejected_truncated for e in encoded],
        "ches": v[:, 2], "ches_normalized": v[:, 3],
    }, index=pairs.index)
    frame.attrs["cache_lines_discarded"] = scored.cache_lines_discarded
    return frame
