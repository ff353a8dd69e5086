"""LLMBar: ``input``, ``output_1``, ``output_2`` and a gold ``label`` (1 or 2 = the better output).

One judgement per record, no annotator, no ties (a label outside 1/2 is counted and dropped).
``output_1`` is the one shown first (``chosen_shown_first``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import Context, note_empty, parse_choice, require, row, text

NAME = "llmbar"
LABELS = {1: "A", 2: "B"}


def sniff(record: Mapping[str, Any]) -> bool:
    return {"input", "output_1", "output_2", "label"} <= record.keys()


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    prompt = text(record, "input", ctx)
    out_1, out_2 = text(record, "output_1", ctx), text(record, "output_2", ctx)
    note_empty(out_1, "output_1", ctx)
    note_empty(out_2, "output_2", ctx)
    choice = parse_choice(require(record, "label", ctx), LABELS, "label", ctx)
    if choice is None:
        return []
    chosen, rejected = (out_1, out_2) if choice == "A" else (out_2, out_1)
    return [row(ctx, ctx.default_pair_id, prompt, chosen, rejected, chosen_shown_first=choice == "A")]
