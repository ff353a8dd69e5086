"""AlpacaFarm / AlpacaEval human annotations: an instruction, two outputs, a ``preference``.

Fields: ``instruction``, ``input``?, ``output_1``, ``output_2``, ``preference``.
``preference`` is 1 (output_1 better) or 2 (output_2 better); 0 and 1.5 (both used for
draws in different releases) are ties. The annotator comes from ``annotator``, else
``annotator_index``, else none. Judgements of the same comparison (same instruction and
input, same two outputs in either order) share a content-hash pair id, so several
annotators' rows form one multi-annotator pair; a repeated (pair, annotator) is counted and
kept as a ``repeat`` row (for swap consistency). A tie keeps chosen = output_1. ``output_1``
is the one shown first (``chosen_shown_first``); ``generator_1``/``generator_2``, when
present, name the models (``chosen_model``/``rejected_model``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import (
    Context,
    content_id,
    id_text,
    instruction_prompt,
    judged_before,
    note_empty,
    parse_choice,
    require,
    row,
    text,
)

NAME = "alpacafarm"
LABELS = {1: "A", 2: "B", 0: "tie", 1.5: "tie"}


def sniff(record: Mapping[str, Any]) -> bool:
    return {"instruction", "output_1", "output_2", "preference"} <= record.keys()


def _annotator(record: Mapping[str, Any], ctx: Context) -> str | None:
    for key in ("annotator", "annotator_index"):
        value = record.get(key)
        if value is not None:
            value = id_text(value, key, ctx)
            if value is not None and value != "":
                return value
    return None


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    instruction = text(record, "instruction", ctx)
    input_text = text(record, "input", ctx, required=False)
    out_1, out_2 = text(record, "output_1", ctx), text(record, "output_2", ctx)
    note_empty(out_1, "output_1", ctx)
    note_empty(out_2, "output_2", ctx)
    choice = parse_choice(require(record, "preference", ctx), LABELS, "preference", ctx)
    if choice is None:
        return []
    pair_id = content_id(ctx, instruction, input_text, *sorted((out_1, out_2)))
    annotator = _annotator(record, ctx)
    repeat = judged_before(ctx, pair_id, annotator)
    models = [text(record, "generator_1", ctx, required=False) or None,
              text(record, "generator_2", ctx, required=False) or None]
    chosen, rejected = (out_2, out_1) if choice == "B" else (out_1, out_2)
    if choice == "B":
        models.reverse()
    return [row(ctx, pair_id, instruction_prompt(instruction, input_text), chosen, rejected,
                annotator=annotator, tie=choice == "tie", chosen_shown_first=choice != "B",
                chosen_model=models[0], rejected_model=models[1], repeat=repeat)]
