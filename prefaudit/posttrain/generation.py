"""On target prompts: what the policy says compared with the reference, and how far it drifted.

A target prompt is what a user sends, so when the tokenizer has a chat template it is rendered
as one user turn with the generation prompt (how a chat model is served); otherwise, or with
``chat=False``, it is encoded as plain text the way
:func:`prefaudit.scoring.logprobs.encode_pairs` encodes the prompts of text pairs (the
tokenizer's own special tokens, a BOS/EOS token for an empty prompt). One prompt at a time (no
padding). Per prompt:

- a greedy response from each model (``max_new_tokens``), shown side by side in the report;
  their token counts give the length ratio and their repeated token 3-grams the repetition rate;
- one response *sampled* from the policy (temperature 1, no top-k/top-p, seeded), scored under
  both models: ``sum_t log pi(y_t) - log pi_ref(y_t)`` over its tokens is an unbiased estimate of
  KL(pi || pi_ref) for that prompt, and its per-token mean ranks the most-drifted prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: n of the n-grams whose repeats count as repetition.
REPEAT_N = 3


@dataclass(frozen=True)
class Generated:
    """One target prompt: both greedy responses (token ids) and the sampled KL terms."""

    prompt: str
    policy_ids: tuple[int, ...]
    reference_ids: tuple[int, ...]
    kl_sum: float
    kl_tokens: int


def prompt_ids(tokenizer: Any, prompt: str, *, chat: bool = True) -> list[int]:
    """Token ids of a target prompt: one chat turn if ``chat`` and the tokenizer has a template,
    else the text as the scorer encodes the prompt of a text pair."""
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"]) if prompt else []
    if not ids:
        ids = [next(int(t) for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None)]
    return ids


def generate_on_prompts(policy: Any, reference: Any, tokenizer: Any, prompts: Sequence[str], *,
                        max_new_tokens: int = 64, seed: int = 0, chat: bool = True) -> list[Generated]:
    """Greedy responses of both models and the policy's sampled log-ratio, per prompt."""
    import torch

    torch.manual_seed(seed)
    out = []
    for text in prompts:
        ids = prompt_ids(tokenizer, text, chat=chat)
        greedy_p = _generate(policy, tokenizer, ids, max_new_tokens, sample=False)
        greedy_r = _generate(reference, tokenizer, ids, max_new_tokens, sample=False)
        sampled = _generate(policy, tokenizer, ids, max_new_tokens, sample=True)
        ratio = token_logps(policy, ids, sampled) - token_logps(reference, ids, sampled)
        out.append(Generated(text, tuple(greedy_p), tuple(greedy_r), float(ratio.sum()), len(sampled)))
    return out


def _generate(model: Any, tokenizer: Any, ids: list[int], max_new_tokens: int, *, sample: bool) -> list[int]:
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1,
                              temperature=1.0 if sample else None, top_k=0 if sample else None,
                              top_p=1.0 if sample else None, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=pad)
    inputs = torch.tensor([ids], device=device)
    with torch.inference_mode():
        full = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    return [int(t) for t in full[0, len(ids):].tolist()]


def token_logps(model: Any, prompt: Sequence[int], response: Sequence[int]) -> np.ndarray:
    """Log-probability of each response token given the prompt and the tokens before it."""
    import torch

    if not response:
        return np.zeros(0)
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt) + list(response)], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, ids[0, len(prompt):, None])[:, 0].double().cpu().numpy()


def repeated_ngrams(ids: Sequence[int], n: int = REPEAT_N) -> tuple[int, int]:
    """``(repeats, total)``: n-grams of ``ids`` that already occurred earlier in it, and all n-grams."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) - len(set(grams)), len(grams)


def repetition_rate(responses: Sequence[Sequence[int]], n: int = REPEAT_N) -> float | None:
    """Share of the responses' token n-grams that repeat an earlier n-gram of the same response."""
    counts = np.array([repeated_ngrams(r, n) for r in responses], dtype=float).reshape(-1, 2)
    total = counts[:, 1].sum()
    return float(counts[:, 0].sum() / total) if total else None
