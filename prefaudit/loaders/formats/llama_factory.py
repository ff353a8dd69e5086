"""LLaMA-Factory DPO data: ShareGPT-style ``conversations`` + ``chosen``/``rejected`` turns, or Alpaca-style.

ShareGPT style (``dpo_en_demo.json``): ``conversations`` is a list of ``{"from", "value"}``
turns (``from`` in system / human / gpt), ``chosen`` and ``rejected`` are single
``{"from": "gpt", "value"}`` turns; an optional top-level ``system`` string opens the
conversation. Roles become system / user / assistant in ``prompt_messages`` /
``chosen_messages`` / ``rejected_messages``; the text prompt is the rendered conversation.
Alpaca style: ``instruction``, optional ``input``, and ``chosen``/``rejected`` as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import (
    Context,
    instruction_prompt,
    messages,
    note_empty,
    render_messages,
    require,
    row,
    text,
)

NAME = "llama_factory"
ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
         "assistant": "assistant"}


def sniff(record: Mapping[str, Any]) -> bool:
    if not {"chosen", "rejected"} <= record.keys() or "prompt" in record:
        return False
    if "conversations" in record:
        c = record["chosen"]
        return isinstance(c, Mapping) and "value" in c
    return "instruction" in record and isinstance(record["chosen"], str)


def _turn(record: Mapping[str, Any], key: str, ctx: Context) -> list[dict[str, str]]:
    value = require(record, key, ctx)
    if not isinstance(value, Mapping):
        raise ctx.error(f"expected a {{'from', 'value'}} turn, got {type(value).__name__}", field=key)
    return messages([value], key, ctx, role_key="from", content_key="value", role_map=ROLES)


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    pair_id = ctx.default_pair_id
    if "conversations" not in record:
        prompt = instruction_prompt(text(record, "instruction", ctx),
                                    text(record, "input", ctx, required=False))
        chosen, rejected = text(record, "chosen", ctx), text(record, "rejected", ctx)
        note_empty(chosen, "chosen", ctx)
        note_empty(rejected, "rejected", ctx)
        return [row(ctx, pair_id, prompt, chosen, rejected)]
    prompt_msgs = messages(require(record, "conversations", ctx), "conversations", ctx,
                           role_key="from", content_key="value", role_map=ROLES)
    system = text(record, "system", ctx, required=False)
    if system:
        prompt_msgs = [{"role": "system", "content": system}, *prompt_msgs]
    cm, rm = _turn(record, "chosen", ctx), _turn(record, "rejected", ctx)
    chosen, rejected = cm[0]["content"], rm[0]["content"]
    note_empty(chosen, "chosen", ctx)
    note_empty(rejected, "rejected", ctx)
    return [row(ctx, pair_id, render_messages(prompt_msgs), chosen, rejected,
                prompt_messages=prompt_msgs, chosen_messages=cm, rejected_messages=rm)]
