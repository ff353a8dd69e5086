"""Prompt + response -> token ids: the one place pairs are tokenised for scoring and training.

Two encodings (``encoding=`` of :func:`encode_pairs`):

``"trl"`` (the default) is TRL 1.16 ``DPOTrainer``'s exact encoding (``_prepare_dataset`` and
``DataCollatorForPreference``), so the reference margins are the numbers DPO will train with:

- the table is conversational when every row holds message lists in ``prompt_messages`` /
  ``chosen_messages`` / ``rejected_messages`` (:func:`is_conversational`), else every row is
  text (TRL's dataset has one type per column; :func:`trl_columns` builds it);
- text rows: EOS (the string ``tokenizer.eos_token``) is appended to each response that does
  not already end with it; ``tokenizer(prompt)``, ``tokenizer(prompt + chosen)`` and
  ``tokenizer(prompt + rejected)`` are tokenised with the tokenizer's own special tokens (a
  BOS if it adds one) and no separator between prompt and response;
- conversational rows: ``apply_chat_template(prompt, add_generation_prompt=True)`` and
  ``apply_chat_template(prompt + response)``, tokenised without added special tokens (what
  the template call with ``tokenize=True`` does);
- the prompt is the longest token prefix the prompt shares with *both* prompt+response
  sequences, each response the rest of its sequence;
- truncation (``max_length``) keeps the start: each ``prompt + response`` keeps its first
  ``max_length`` tokens. A prompt of ``max_length`` tokens or more leaves the responses empty
  (TRL drops such pairs from training; here they are scored as empty and counted).

:func:`trl_sequences` makes those ids for batches of rows at once (a fast tokenizer's Rust
``encode_batch``, its own truncation and padding switched off for the call and restored after);
``encoding="trl"`` and the length analyzer's token statistics both read them.

``"natural"`` reads prompt and response as one text: the prompt with the tokenizer's
special tokens, the response tokenised on its own after ``separator`` (put in only when the
prompt ends in a non-space character and the response starts with one: "Assistant:" + "No"
reads "Assistant: No"), plus EOS when ``add_eos``; rows with message lists render the prompt with the
generation prompt and score the rest of the rendered conversation. An empty prompt gets one
BOS (or EOS) token. Truncation keeps the end of the prompt
(``max(max_length - longer response, max_length // 2)`` tokens) and the start of each response.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from prefaudit.errors import ConfigError

#: The encodings :func:`encode_pairs` offers; the first is the default.
ENCODINGS: tuple[str, ...] = ("trl", "natural")
#: Columns that make a row conversational (all three must hold message lists).
MESSAGE_COLUMNS: tuple[str, ...] = ("prompt_messages", "chosen_messages", "rejected_messages")
#: Rows per tokenizer call of :func:`trl_sequences`.
BATCH_SIZE = 2048


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


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Number of leading ids ``a`` and ``b`` share (a bisection over list-slice compares)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _chat_rows(pairs: pd.DataFrame) -> pd.Series:
    if not all(c in pairs.columns for c in MESSAGE_COLUMNS):
        return pd.Series(False, index=pairs.index)
    return pairs[list(MESSAGE_COLUMNS)].map(_is_messages).all(axis=1)


def is_conversational(pairs: pd.DataFrame) -> bool:
    """Whether every row of ``pairs`` holds message lists (TRL then applies the chat template)."""
    return len(pairs) > 0 and bool(_chat_rows(pairs).all())


def trl_columns(pairs: pd.DataFrame) -> dict[str, list[Any]]:
    """The ``prompt`` / ``chosen`` / ``rejected`` columns to hand TRL's ``DPOTrainer``: the
    message lists of a conversational table, else the texts (what ``encoding="trl"`` encodes)."""
    cols = MESSAGE_COLUMNS if is_conversational(pairs) else ("prompt", "chosen", "rejected")
    return {name: pairs[c].tolist() for name, c in zip(("prompt", "chosen", "rejected"), cols, strict=True)}


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def load_tokenizer(tokenizer: str | Path | Any) -> Any:
    """A loaded tokenizer: ``tokenizer`` itself if it is one, else ``AutoTokenizer`` on a local path.

    Raises :class:`~prefaudit.errors.ConfigError` when the path does not hold a tokenizer (the
    hub is never contacted: ``HF_HUB_OFFLINE`` is set).
    """
    if not isinstance(tokenizer, (str, Path)):
        if not callable(tokenizer):
            raise ConfigError(f"tokenizer must be a path or a tokenizer object, "
                              f"got {type(tokenizer).__name__}")
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load a tokenizer from {str(tokenizer)!r} ({first:.200})") from None


@contextmanager
def _untruncated(backend: Any) -> Iterator[None]:
    """A fast tokenizer's Rust backend without truncation or padding for the block, its own
    settings restored after (calling the ``transformers`` tokenizer would drop them for good)."""
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        yield
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**padding)


def _encode_batch(tokenizer: Any, texts: Sequence[str], special: bool) -> list[list[int]]:
    """``tokenizer(text, add_special_tokens=special)["input_ids"]`` of each text, in one call."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=special)["input_ids"]]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    with _untruncated(backend):
        return [e.ids for e in encode(list(texts), add_special_tokens=special)]


def trl_sequences(tokenizer: Any, pairs: pd.DataFrame, *,
                  batch_size: int = BATCH_SIZE) -> Iterator[tuple[list[list[int]], ...]]:
    """TRL's untruncated ``(prompt, prompt + chosen, prompt + rejected)`` ids, one batch of rows at a time.

    Exactly the three tokenisations of TRL 1.16 ``DPOTrainer``'s ``tokenize_fn`` (module
    docstring): text rows get EOS appended to each response that lacks it and are tokenised
    with the tokenizer's special tokens; a conversational table (:func:`is_conversational`)
    is rendered by the chat template (the prompt with the generation prompt) and tokenised
    without added special tokens, as ``apply_chat_template(tokenize=True)`` does. Split each
    row with :func:`split_trl`.
    """
    chat = is_conversational(pairs)
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the data is conversational but the tokenizer has no chat template")
    eos = tokenizer.eos_token or ""
    cols = MESSAGE_COLUMNS if chat else ("prompt", "chosen", "rejected")

    def render(prompts: list[Any], responses: list[Any] | None) -> list[str]:
        if not chat:
            return prompts if responses is None else [
                p + (r if r.endswith(eos) else r + eos) for p, r in zip(prompts, responses, strict=True)]
        if responses is None:
            return tokenizer.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True)
        return tokenizer.apply_chat_template([p + r for p, r in zip(prompts, responses, strict=True)],
                                             tokenize=False)

    for start in range(0, len(pairs), batch_size):
        p, c, r = (pairs[col].iloc[start:start + batch_size].tolist() for col in cols)
        yield tuple(_encode_batch(tokenizer, render(p, x), special=not chat) for x in (None, c, r))


def context_token(tokenizer: Any) -> int:
    """The BOS id, else the EOS id: what stands for an empty prompt or pads a row."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ConfigError("the tokenizer has neither a BOS nor an EOS token to stand for an empty prompt")


def split_trl(prompt: list[int], with_c: list[int], with_r: list[int]) -> tuple[list[int], ...]:
    """``(prompt, chosen, rejected)`` ids as TRL splits them: the prompt is the longest prefix of
    its own ids that both prompt + response sequences share, each response the rest."""
    n = min(common_prefix_length(prompt, with_c), common_prefix_length(prompt, with_r))
    return prompt[:n], with_c[n:], with_r[n:]


def _natural_chat(tokenizer: Any, prompt_msgs: list[dict[str, str]], response_msgs: list[dict[str, str]],
                  where: str) -> tuple[list[int], list[int]]:
    head = tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_msgs + response_msgs, tokenize=False)
    if not full.startswith(head):
        raise ConfigError(f"{where}: the chat template renders the conversation with the response "
                          "differently from the prompt alone, so the response tokens cannot be "
                          "separated exactly; score this data as text (drop the *_messages columns)")
    return _ids(tokenizer, head, special=False), _ids(tokenizer, full[len(head):], special=False)


def _natural_text(tokenizer: Any, prompt: str, response: str, separator: str,
                  add_eos: bool) -> tuple[list[int], list[int]]:
    p = _ids(tokenizer, prompt, special=True) if prompt else []
    if not p:
        p = [context_token(tokenizer)]
    if prompt and not prompt[-1].isspace() and response and not response[0].isspace():
        response = separator + response
    r = _ids(tokenizer, response, special=False)
    if add_eos and tokenizer.eos_token_id is not None:
        r.append(int(tokenizer.eos_token_id))
    return p, r


def _truncate_keep_start(p: list[int], c: list[int], r: list[int], max_length: int | None) -> EncodedPair:
    if max_length is None or len(p) + max(len(c), len(r)) <= max_length:
        return EncodedPair(tuple(p), tuple(c), tuple(r))
    keep_p = min(len(p), max_length)
    room = max_length - keep_p
    return EncodedPair(tuple(p[:keep_p]), tuple(c[:room]), tuple(r[:room]),
                       len(p) - keep_p, max(0, len(c) - room), max(0, len(r) - room))


def _truncate_keep_prompt_end(p: list[int], c: list[int], r: list[int],
                              max_length: int | None) -> EncodedPair:
    longer = max(len(c), len(r))
    if max_length is None or len(p) + longer <= max_length:
        return EncodedPair(tuple(p), tuple(c), tuple(r))
    keep_p = min(len(p), max(max_length - longer, max_length // 2))
    room = max_length - keep_p
    return EncodedPair(tuple(p[len(p) - keep_p:]), tuple(c[:room]), tuple(r[:room]),
                       len(p) - keep_p, max(0, len(c) - room), max(0, len(r) - room))


def encode_pairs(tokenizer: Any, pairs: pd.DataFrame, *, max_length: int | None = None,
                 encoding: str = "trl", separator: str = " ", add_eos: bool = True) -> list[EncodedPair]:
    """Token ids of each row of ``pairs`` under ``encoding`` (module docstring for the rules).

    ``pairs`` needs ``prompt``, ``chosen``, ``rejected``; rows whose :data:`MESSAGE_COLUMNS`
    all hold message lists are conversational (under ``"trl"`` only when all rows are).
    ``separator`` and ``add_eos`` apply to the ``"natural"`` encoding only (TRL always appends
    EOS and joins without a separator).
    """
    if encoding not in ENCODINGS:
        raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if max_length is not None and max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
    if encoding == "trl":
        return [_truncate_keep_start(*split_trl(p, c, r), max_length)
                for batch in trl_sequences(tokenizer, pairs) for p, c, r in zip(*batch, strict=True)]
    chat_rows = _chat_rows(pairs)
    if chat_rows.any() and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the data is conversational but the reference tokenizer has no chat template")
    out = []
    for i, (rec, chat) in enumerate(zip(pairs.to_dict("records"), chat_rows, strict=True)):
        if chat:
            where = f"pair {rec.get('pair_id', i)}"
            p, c = _natural_chat(tokenizer, rec["prompt_messages"], rec["chosen_messages"], where)
            r = _natural_chat(tokenizer, rec["prompt_messages"], rec["rejected_messages"], where)[1]
        else:
            p, c = _natural_text(tokenizer, rec["prompt"], rec["chosen"], separator, add_eos)
            r = _natural_text(tokenizer, rec["prompt"], rec["rejected"], separator, add_eos)[1]
        out.append(_truncate_keep_prompt_end(p, c, r, max_length))
    return out
