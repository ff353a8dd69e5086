"""PandaLM test set: instruction + input, two responses, ``annotator1..N`` (0 tie, 1, 2).

Fields: ``instruction`` + ``input``, ``response1``/``response2``, ``annotator1..N``.
One row per annotator (annotator names are the field names, ``annotator1`` ...), all sharing
the pair id ``<source>:<idx>``. A tie keeps chosen = response1, rejected = response2.
``response1`` is the one shown first (``chosen_shown_first``).
Responses stored as JSON booleans (six in testset-v1) are kept as the text "true"/"false"
and counted; empty responses are kept and counted; a label outside 0/1/2 drops that
judgement and is counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import (
    Context,
    id_text,
    instruction_prompt,
    note_empty,
    parse_choice,
    row,
    text,
)

NAME = "pandalm"
LABELS = {0: "tie", 1: "A", 2: "B"}
ANNOTATOR = re.compile(r"annotator\d+$")


def sniff(record: Mapping[str, Any]) -> bool:
    return {"instruction", "response1", "response2"} <= record.keys() and any(
        ANNOTATOR.match(str(k)) for k in record)


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    prompt = instruction_prompt(text(record, "instruction", ctx),
                                text(record, "input", ctx, required=False))
    r1, r2 = text(record, "response1", ctx), text(record, "response2", ctx)
    note_empty(r1, "response1", ctx)
    note_empty(r2, "response2", ctx)
    annotators = sorted((k for k in record if ANNOTATOR.match(str(k))), key=lambda k: int(k[9:]))
    if not annotators:
        raise ctx.error("record has no annotatorN label field", field="annotator1")
    idx = id_text(record.get("idx"), "idx", ctx)
    pair_id = f"{ctx.source}:{idx}" if idx is not None else ctx.default_pair_id
    rows = []
    for ann in annotators:
        value = record[ann]
        if value is None:
            ctx.note(f"missing_{ann}", "dropped", f"field '{ann}' is null; that judgement dropped")
            continue
        choice = parse_choice(value, LABELS, ann, ctx)
        if choice is None:
            continue
        chosen, rejected = (r2, r1) if choice == "B" else (r1, r2)
        rows.append(row(ctx, pair_id, prompt, chosen, rejected, annotator=ann, tie=choice == "tie",
                        chosen_shown_first=choice != "B"))
    return rows
