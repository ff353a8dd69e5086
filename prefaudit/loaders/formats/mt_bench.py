"""MT-Bench human judgements: two models' conversations, a ``winner``, a ``judge``, a ``turn``.

Fields: ``question_id``, ``model_a``, ``model_b``, ``winner``, ``judge``, conversations, ``turn``.
``winner`` is model_a, model_b, tie or "tie (bothbad)" (both ties). ``conversation_a`` /
``conversation_b`` are the two models' full conversations (``{"role", "content"}``
messages); the judged turn ``turn`` (1-based) gives the prompt (the conversation up to
that turn's user message, taken from the first model's side) and, as the two responses,
each model's answer in that turn. The two models are put in name order, so every judge's
row of the same comparison has the same response A (a tie keeps chosen = response A) and
the pair id ``<source>:<question_id>:<model>|<model>:t<turn>``; ``model_a`` is the one
shown first (``chosen_shown_first``) and the model names are kept (``chosen_model``,
``rejected_model``). In turn 2 and later the
two conversations differ before the judged turn (each model saw its own earlier answer):
those rows are kept, marked ``prefix_mismatch`` in ``load_flags`` and counted. A judge
judging the same comparison twice is counted and the repeat kept as a ``repeat`` row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefaudit.loaders.common import (
    Context,
    id_text,
    judged_before,
    messages,
    note_empty,
    parse_choice,
    render_messages,
    require,
    row,
    text,
)

NAME = "mt_bench"
WINNERS = {"model_a": "A", "model_b": "B", "tie": "tie", "tie (bothbad)": "tie"}


def sniff(record: Mapping[str, Any]) -> bool:
    return {"question_id", "model_a", "model_b", "winner"} <= record.keys()


def _turn(conv: list[dict[str, str]], turn: int, key: str, ctx: Context
          ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(messages before the judged answer, [the judged answer])."""
    users = [i for i, m in enumerate(conv) if m["role"] == "user"]
    if len(users) < turn:
        raise ctx.error(f"conversation has {len(users)} user turn(s); turn {turn} was judged", field=key)
    start = users[turn - 1] + 1
    if start >= len(conv) or conv[start]["role"] != "assistant":
        raise ctx.error(f"no assistant answer after user turn {turn}", field=key)
    return conv[:start], conv[start:start + 1]


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    question_id = id_text(require(record, "question_id", ctx), "question_id", ctx)
    model_a, model_b = text(record, "model_a", ctx), text(record, "model_b", ctx)
    raw_turn = require(record, "turn", ctx)
    try:
        turn = int(raw_turn)
    except (TypeError, ValueError):
        raise ctx.error(f"expected a turn number, got {raw_turn!r:.40}", field="turn") from None
    if isinstance(raw_turn, bool) or turn < 1:
        raise ctx.error(f"expected a turn number >= 1, got {raw_turn!r}", field="turn")
    conv_a = messages(require(record, "conversation_a", ctx), "conversation_a", ctx)
    conv_b = messages(require(record, "conversation_b", ctx), "conversation_b", ctx)
    choice = parse_choice(require(record, "winner", ctx), WINNERS, "winner", ctx)
    if choice is None:
        return []
    judge = str(require(record, "judge", ctx))
    prefix_a, answer_a = _turn(conv_a, turn, "conversation_a", ctx)
    prefix_b, answer_b = _turn(conv_b, turn, "conversation_b", ctx)
    first_model = model_a
    if model_b < model_a:  # name order: response A is always the same model's answer
        model_a, model_b = model_b, model_a
        prefix_a, answer_a, prefix_b, answer_b = prefix_b, answer_b, prefix_a, answer_a
        choice = {"A": "B", "B": "A"}.get(choice, choice)
    pair_id = f"{ctx.source}:{question_id}:{model_a}|{model_b}:t{turn}"
    repeat = judged_before(ctx, pair_id, judge)
    note_empty(answer_a[0]["content"], "answer", ctx)
    note_empty(answer_b[0]["content"], "answer", ctx)
    flags = ""
    if prefix_a != prefix_b:
        ctx.note("prefix_mismatch", "flagged",
                 "the two conversations differ before the judged turn; kept with the first "
                 "model's conversation as the prompt and marked 'prefix_mismatch'")
        flags = "prefix_mismatch"
    (chosen, cm), (rejected, rm) = (answer_a[0]["content"], answer_a), (answer_b[0]["content"], answer_b)
    chosen_model, rejected_model = model_a, model_b
    if choice == "B":
        (chosen, cm), (rejected, rm) = (rejected, rm), (chosen, cm)
        chosen_model, rejected_model = model_b, model_a
    return [row(ctx, pair_id, render_messages(prefix_a), chosen, rejected, annotator=judge,
                tie=choice == "tie", prompt_messages=prefix_a, chosen_messages=cm,
                rejected_messages=rm, load_flags=flags, chosen_shown_first=chosen_model == first_model,
                chosen_model=chosen_model, rejected_model=rejected_model, repeat=repeat)]
