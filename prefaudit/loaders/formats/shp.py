"""Stanford SHP: a Reddit ``history``, two comments, ``labels`` (1 = A preferred).

The two comments are ``human_ref_A``/``human_ref_B``.
``strength`` is the natural log of the score ratio, ``ln(score_chosen / score_rejected)``
(SHP's own ``score_ratio`` on a log scale: 0.69 means the preferred comment got twice the
upvotes). It is missing, and counted as ``no_score_ratio``, when a score is absent or not
positive. A label that contradicts the scores (negative strength) is kept and counted.
Pair ids are ``<source>:<post_id>:<c_root_id_A>:<c_root_id_B>`` when those ids exist.
Comment ``A`` counts as the one shown first (``chosen_shown_first``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import Context, id_text, note_empty, parse_choice, require, row, score, text

NAME = "shp"
LABELS = {1: "A", 0: "B"}


def sniff(record: Mapping[str, Any]) -> bool:
    return {"human_ref_A", "human_ref_B", "labels"} <= record.keys()


def _pair_id(record: Mapping[str, Any], ctx: Context) -> str:
    ids = [id_text(record.get(k), k, ctx) for k in ("post_id", "c_root_id_A", "c_root_id_B")]
    if all(v is not None and v != "" for v in ids):
        return ":".join([ctx.source, *map(str, ids)])
    return ctx.default_pair_id


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    prompt = text(record, "history", ctx)
    ref_a, ref_b = text(record, "human_ref_A", ctx), text(record, "human_ref_B", ctx)
    note_empty(ref_a, "human_ref_A", ctx)
    note_empty(ref_b, "human_ref_B", ctx)
    choice = parse_choice(require(record, "labels", ctx), LABELS, "labels", ctx)
    if choice is None:
        return []
    score_a, score_b = score(record, "score_A", ctx), score(record, "score_B", ctx)
    if choice == "B":
        ref_a, ref_b, score_a, score_b = ref_b, ref_a, score_b, score_a
    strength = None
    if score_a is not None and score_b is not None and score_a > 0 and score_b > 0:
        strength = math.log(score_a / score_b)
        if strength < 0:
            ctx.note("label_contradicts_scores", "kept",
                     "the preferred comment has the lower score; kept with a negative strength")
    else:
        ctx.note("no_score_ratio", "kept", "score_A/score_B missing or not positive; strength left empty")
    return [row(ctx, _pair_id(record, ctx), prompt, ref_a, ref_b, strength=strength,
                chosen_shown_first=choice == "A")]
