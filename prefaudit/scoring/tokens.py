"""Token counts of many texts under a ``transformers`` tokenizer, batched and exact.

:func:`count_tokens` gives, for each text, the number of ids that ``tokenizer(text,
add_special_tokens=False)`` returns, i.e. what TRL's DPO trainer counts for a prompt or a
response. A fast (Rust) tokenizer encodes whole batches in parallel with its truncation and
padding switched off for the call (and restored after); a slow tokenizer is called on batches.
:func:`render_chat` turns conversational pairs into the exact prompt / response strings the
tokenizer's chat template produces, the way TRL renders them before tokenizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefaudit.errors import ConfigError

#: Texts per call to the tokenizer.
BATCH_SIZE = 2048


def load_tokenizer(tokenizer: str | Path | Any) -> Any:
    """A loaded tokenizer: ``tokenizer`` itself if it is one, else ``AutoTokenizer`` on a local path.

    Raises :class:`~prefaudit.errors.ConfigError` when the path does not hold a tokenizer (the
    hub is never contacted: ``HF_HUB_OFFLINE`` is set).
    """
    if not isinstance(tokenizer, (str, Path)):
        if not callable(tokenizer):
            raise ConfigError(f"length: tokenizer must be a path or a tokenizer object, got "
                              f"{type(tokenizer).__name__}")
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"length: cannot load a tokenizer from {str(tokenizer)!r} ({first:.200})") from None


def count_tokens(tokenizer: Any, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Number of tokens of each text without special tokens (int64 array, same order as ``texts``)."""
    texts = list(texts)
    out = np.zeros(len(texts), dtype=np.int64)
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        for start in range(0, len(texts), batch_size):
            ids = tokenizer(texts[start:start + batch_size], add_special_tokens=False,
                            return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            out[start:start + len(ids)] = [len(i) for i in ids]
        return out
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    try:
        for start in range(0, len(texts), batch_size):
            enc = encode(texts[start:start + batch_size], add_special_tokens=False)
            out[start:start + len(enc)] = [len(e) for e in enc]
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**padding)
    return out


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, prompts: Sequence[list[dict[str, str]]],
                chosen: Sequence[list[dict[str, str]]],
                rejected: Sequence[list[dict[str, str]]]) -> tuple[list[str], list[str], list[str]]:
    """Prompt, chosen and rejected strings as the chat template renders them for DPO.

    As in TRL: the prompt is rendered with the generation prompt (or continuing a final
    assistant message), each response as the rest of ``template(prompt + response)`` after the
    longest prefix the three renderings share.
    """
    out_p, out_c, out_r = [], [], []
    for pm, cm, rm in zip(prompts, chosen, rejected, strict=True):
        last = pm[-1]["role"] if pm else "user"
        p = tokenizer.apply_chat_template(pm, tokenize=False, add_generation_prompt=last != "assistant",
                                          continue_final_message=last == "assistant") if pm else ""
        pc = tokenizer.apply_chat_template(list(pm) + list(cm), tokenize=False)
        pr = tokenizer.apply_chat_template(list(pm) + list(rm), tokenize=False)
        n = min(_common_prefix(p, pc), _common_prefix(p, pr))
        out_p.append(p[:n])
        out_c.append(pc[n:])
        out_r.append(pr[n:])
    return out_p, out_c, out_r


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
