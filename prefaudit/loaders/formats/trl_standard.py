"""TRL standard preference format: explicit ``prompt``, ``chosen``, ``rejected``.

Each is either text, or (conversational) a list of ``{"role", "content"}`` messages: the
prompt holds the conversation so far, chosen/rejected the assistant turn(s). Optional
``score_chosen``/``score_rejected`` (UltraFeedback-binarized style) give ``strength`` as
their difference; equal scores make a tie; a pair with only one usable score is counted
(``one_score_missing``) and gets no strength. An optional ``pair_id`` or ``id`` names the pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import (
    Context,
    as_text,
    messages,
    note_empty,
    pair_id_of,
    render_messages,
    require,
    row,
    score,
)

NAME = "trl_standard"


def sniff(record: Mapping[str, Any]) -> bool:
    return {"prompt", "chosen", "rejected"} <= record.keys()


def _side(record: Mapping[str, Any], key: str, ctx: Context) -> tuple[str, list[dict[str, str]] | None]:
    value = require(record, key, ctx)
    if isinstance(value, list):
        msgs = messages(value, key, ctx)
        if key == "prompt":
            return render_messages(msgs), msgs
        return "\n\n".join(m["content"] for m in msgs), msgs
    return as_text(value, key, ctx), None


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    prompt, pm = _side(record, "prompt", ctx)
    chosen, cm = _side(record, "chosen", ctx)
    rejected, rm = _side(record, "rejected", ctx)
    if (pm is None) != (cm is None) or (cm is None) != (rm is None):
        raise ctx.error("prompt, chosen and rejected must all be text or all be message lists",
                        field="chosen" if (pm is None) != (cm is None) else "rejected")
    note_empty(chosen, "chosen", ctx)
    note_empty(rejected, "rejected", ctx)
    strength, tie = None, False
    sc, sr = score(record, "score_chosen", ctx), score(record, "score_rejected", ctx)
    if sc is not None and sr is not None:
        strength = sc - sr
        if not math.isfinite(strength):  # two huge scores of opposite sign
            ctx.note("non_finite_score", "coerced",
                     "the difference of score_chosen and score_rejected overflows; strength left empty")
            strength = None
        tie = strength == 0
    elif (sc is None) != (sr is None):
        ctx.note("one_score_missing", "kept", "only one of score_chosen/score_rejected is a usable "
                 "number; strength left empty")
    pair_id = pair_id_of(record, ctx)
    return [row(ctx, pair_id, prompt, chosen, rejected, tie=tie, strength=strength,
                prompt_messages=pm, chosen_messages=cm, rejected_messages=rm)]
