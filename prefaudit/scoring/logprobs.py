"""Sequence log-probabilities of responses given their prompts, under a causal LM.

:func:`score_pairs` returns, for each (prompt, chosen, rejected) pair, the summed log-prob of
each response's tokens given the prompt (``chosen_logp``, ``rejected_logp``), the number of
tokens scored, and how many tokens truncation removed.

Tokenisation (:func:`encode_pairs`), the boundary between prompt and response made exact:

- conversational rows (list-valued ``prompt_messages`` / ``chosen_messages`` /
  ``rejected_messages``): the chat template renders ``prompt`` with the generation prompt
  (text P) and ``prompt + response`` (text F); F must start with P. The prompt tokens are
  ``tokenize(P)`` and the response tokens ``tokenize(F[len(P):])`` (so the assistant's
  end-of-turn marker is scored as part of the response);
- text rows: the prompt tokens are ``tokenize(prompt)`` with the tokenizer's own special
  tokens (a BOS if it adds one), the response tokens ``tokenize(separator + response)``
  without special tokens, plus EOS when ``add_eos`` (as TRL's DPO does). The separator (one
  space by default) is only put in when the prompt ends in a non-space character and the
  response starts with one ("Assistant:" + "No" reads "Assistant: No").

Each side is tokenised on its own and the ids are concatenated, so a response is scored on
the same tokens however it is batched. An empty prompt gets one BOS (or EOS) token so that
the first response token has a context.

Truncation to ``max_length`` (tokens of prompt + response) is explicit and counted: when the
prompt plus the longer response do not fit, the prompt keeps its last
``max(max_length - longer response, max_length // 2)`` tokens, then each response keeps its
first ``max_length - prompt`` tokens. Both responses are scored against the same prompt.

Speed (:func:`score_pairs`): each pair is packed into one row ``prompt | chosen | rejected``
with a 4-D attention mask that hides the two responses from each other and position ids that
restart after the prompt for both, so the shared prompt is computed once. Rows are sorted by
length and grouped by a token budget (padded tokens per forward pass), the LM head and
``log_softmax`` run only on the positions that predict response tokens (for models whose
head is a plain linear layer), under ``torch.inference_mode``. Results go to the
:class:`~prefaudit.scoring.logprob_cache.LogprobCache` after every batch.
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
from prefaudit.scoring.engines import as_engine, fill_logprob_cache
from prefaudit.scoring.logprob_cache import LogprobCache, entry_key

#: Columns of the frame :func:`score_pairs` returns.
SCORE_COLUMNS: tuple[str, ...] = (
    "chosen_logp", "rejected_logp", "prompt_tokens", "chosen_tokens", "rejected_tokens",
    "prompt_truncated", "chosen_truncated", "rejected_truncated",
)
#: Config attributes that mean the logits are more than ``lm_head(hidden)`` (then the full
#: model forward is used instead of applying the head to the response positions only).
_HEAD_MODIFIERS: tuple[str, ...] = ("final_logit_softcapping", "logit_scale", "logits_scaling",
                                    "output_multiplier_scale")


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one pair as scored, and how many tokens truncation removed from each part."""

    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    prompt_truncated: int = 0
    chosen_truncated: int = 0
    rejected_truncated: int = 0

    @property
    def row_length(self) -> int:
        """Tokens of the packed row ``prompt | chosen | rejected``."""
        return len(self.prompt) + len(self.chosen) + len(self.rejected)


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _context_token(tokenizer: Any) -> int:
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ConfigError("the tokenizer has neither a BOS nor an EOS token to stand for an empty prompt")


def _encode_chat(tokenizer: Any, prompt_msgs: list[dict[str, str]], response_msgs: list[dict[str, str]],
                 where: str) -> tuple[list[int], list[int]]:
    head = tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_msgs + response_msgs, tokenize=False)
    if not full.startswith(head):
        raise ConfigError(f"{where}: the chat template renders the conversation with the response "
                          "differently from the prompt alone, so the response tokens cannot be "
                          "separated exactly; score this data as text (drop the *_messages columns)")
    return _ids(tokenizer, head, special=False), _ids(tokenizer, full[len(head):], special=False)


def _encode_text(tokenizer: Any, prompt: str, response: str, separator: str,
                 add_eos: bool) -> tuple[list[int], list[int]]:
    p = _ids(tokenizer, prompt, special=True) if prompt else []
    if not p:
        p = [_context_token(tokenizer)]
    if prompt and not prompt[-1].isspace() and response and not response[0].isspace():
        response = separator + response
    r = _ids(tokenizer, response, special=False)
    if add_eos and tokenizer.eos_token_id is not None:
        r.append(int(tokenizer.eos_token_id))
    return p, r


def _truncate(p: list[int], c: list[int], r: list[int], max_length: int | None) -> EncodedPair:
    longer = max(len(c), len(r))
    if max_length is None or len(p) + longer <= max_length:
        return EncodedPair(tuple(p), tuple(c), tuple(r))
    keep_p = min(len(p), max(max_length - longer, max_length // 2))
    room = max_length - keep_p
    return EncodedPair(tuple(p[len(p) - keep_p:]), tuple(c[:room]), tuple(r[:room]),
                       len(p) - keep_p, max(0, len(c) - room), max(0, len(r) - room))


def encode_pairs(tokenizer: Any, pairs: pd.DataFrame, *, max_length: int | None = None,
                 separator: str = " ", add_eos: bool = True) -> list[EncodedPair]:
    """Token ids of each row of ``pairs`` (see the module docstring for the exact rules).

    ``pairs`` needs ``prompt``, ``chosen``, ``rejected``; rows whose ``prompt_messages``,
    ``chosen_messages`` and ``rejected_messages`` are message lists use the chat template.
    """
    if max_length is not None and max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
    has_msgs = all(c in pairs.columns for c in ("prompt_messages", "chosen_messages", "rejected_messages"))
    if has_msgs and tokenizer.chat_template is None and pairs["prompt_messages"].map(_is_messages).any():
        raise ConfigError("the data is conversational but the reference tokenizer has no chat template")
    out = []
    for i, rec in enumerate(pairs.to_dict("records")):
        if has_msgs and _is_messages(rec["prompt_messages"]) and _is_messages(rec["chosen_messages"]) \
                and _is_messages(rec["rejected_messages"]):
            where = f"pair {rec.get('pair_id', i)}"
            p, c = _encode_chat(tokenizer, rec["prompt_messages"], rec["chosen_messages"], where)
            r = _encode_chat(tokenizer, rec["prompt_messages"], rec["rejected_messages"], where)[1]
        else:
            p, c = _encode_text(tokenizer, rec["prompt"], rec["chosen"], separator, add_eos)
            r = _encode_text(tokenizer, rec["prompt"], rec["rejected"], separator, add_eos)[1]
        out.append(_truncate(p, c, r, max_length))
    return out


def plan_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group row indices into batches: longest rows first, each batch padded to its first row's
    length and holding as many rows as fit in ``token_budget`` padded tokens (at least one).

    The plan depends only on the lengths, so the rows left after an interrupted run are
    batched exactly as they were in the first plan (and give bit-identical numbers).
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


def _forward_batch(model: Any, rows: list[EncodedPair], pad_id: int, plain_head: bool) -> np.ndarray:
    """Summed log-probs, shape (len(rows), 2): chosen and rejected of each packed row."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    width = max(e.row_length for e in rows)
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
        # both responses is predicted by the last prompt token.
        for start, n, which, toks in ((p, c, 0, e.chosen), (p + c, r, 1, e.rejected)):
            if n:
                src_b += [b] * n
                src_t += [p - 1] + list(range(start, start + n - 1))
                tgt += list(toks)
                seq += [2 * b + which] * n
    seg_t = torch.from_numpy(seg)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allow = causal & ((seg_t[:, None, :] == 0) | (seg_t[:, None, :] == seg_t[:, :, None]))
    allow &= seg_t[:, None, :] >= 0
    allow |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty rows
    mask = torch.zeros(allow.shape, dtype=dtype).masked_fill_(~allow, torch.finfo(dtype).min)
    inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": mask[:, None].to(device),
              "position_ids": torch.from_numpy(pos).to(device)}
    sel_b, sel_t = torch.tensor(src_b, device=device), torch.tensor(src_t, device=device)
    if plain_head:
        hidden = model.base_model(**inputs).last_hidden_state
        logits = model.get_output_embeddings()(hidden[sel_b, sel_t])
    else:
        logits = model(**inputs).logits[sel_b, sel_t]
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_lp = logp.gather(1, torch.tensor(tgt, device=device)[:, None])[:, 0].double().cpu().numpy()
    sums = np.zeros(2 * len(rows), dtype=np.float64)
    np.add.at(sums, np.asarray(seq, dtype=np.int64), token_lp)
    return sums.reshape(len(rows), 2)


def score_encoded(model: Any, tokenizer: Any, encoded: list[EncodedPair], *,
                  token_budget: int | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True,
                  on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Summed log-probs ``(n, 2)`` (chosen, rejected) of already-encoded pairs.

    Pairs found in the cache are not recomputed; the others are scored batch by batch and
    appended to the cache after each batch, then ``on_batch(pairs_done, pairs_to_do)`` is
    called (a callback that raises stops the run; the next run resumes from the cache).
    """
    import torch
    from tqdm.auto import tqdm

    _check_attention(model, encoded)
    cache = LogprobCache.for_model(model, cache_dir)
    keys = [(entry_key(e.prompt, e.chosen), entry_key(e.prompt, e.rejected)) for e in encoded]
    todo = [i for i, (kc, kr) in enumerate(keys) if kc not in cache or kr not in cache]
    device = next(model.parameters()).device
    budget = token_budget or default_token_budget(device.type)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _context_token(tokenizer)
    plain_head = _plain_head(model)
    batches = plan_batches([encoded[i].row_length for i in todo], budget)
    done, n_tokens, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=len(todo), unit="pair", desc="reference log-probs", disable=not progress or None)
    try:
        with torch.inference_mode():
            for batch in batches:
                rows = [encoded[todo[j]] for j in batch]
                sums = _forward_batch(model, rows, pad_id, plain_head)
                entries = []
                for j, (lc, lr) in zip(batch, sums, strict=True):
                    e, (kc, kr) = encoded[todo[j]], keys[todo[j]]
                    entries += [(kc, lc, len(e.chosen)), (kr, lr, len(e.rejected))]
                cache.put_many(entries)
                done += len(batch)
                n_tokens += sum(e.row_length for e in rows)
                bar.update(len(batch))
                bar.set_postfix_str(f"{n_tokens / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s")
                if on_batch is not None:
                    on_batch(done, len(todo))
    finally:
        bar.close()
    out = np.empty((len(encoded), 2), dtype=np.float64)
    for i, (kc, kr) in enumerate(keys):
        out[i] = (cache.get(kc)[0], cache.get(kr)[0])  # type: ignore[index]
    return out


def score_pairs(pairs: pd.DataFrame, model: Any, tokenizer: Any, *, max_length: int | None = None,
                token_budget: int | None = None, cache_dir: str | Path | None = None,
                separator: str = " ", add_eos: bool = True, progress: bool = True,
                on_batch: Callable[[int, int], None] | None = None, engine: Any = None,
                load: Callable[[], tuple[Any, Any]] | None = None) -> pd.DataFrame:
    """Log-probs of each pair's chosen and rejected response given its prompt.

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
    separator, add_eos:
        Text joining rules for non-chat rows (module docstring).
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
    probabilities of the response tokens kept, ``*_tokens`` the tokens kept and scored,
    ``*_truncated`` the tokens truncation removed.
    """
    encoded = encode_pairs(tokenizer, pairs, max_length=max_length, separator=separator, add_eos=add_eos)
    with tempfile.TemporaryDirectory() as tmp:
        if as_engine(engine).kind == "ray":
            cache_dir = cache_dir if cache_dir is not None else tmp  # the driver reads the results back from it
            fill_logprob_cache(as_engine(engine), model, tokenizer, encoded, cache_dir, token_budget=token_budget,
                               load=load, on_batch=on_batch)
        sums = score_encoded(model, tokenizer, encoded, token_budget=token_budget, cache_dir=cache_dir,
                             progress=progress, on_batch=on_batch)
    return pd.DataFrame({
        "chosen_logp": sums[:, 0], "rejected_logp": sums[:, 1],
        "prompt_tokens": [len(e.prompt) for e in encoded],
        "chosen_tokens": [len(e.chosen) for e in encoded],
        "rejected_tokens": [len(e.rejected) for e in encoded],
        "prompt_truncated": [e.prompt_truncated for e in encoded],
        "chosen_truncated": [e.chosen_truncated for e in encoded],
        "rejected_truncated": [e.rejected_truncated for e in encoded],
    }, index=pairs.index)
