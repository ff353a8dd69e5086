"""Generic long table: one judgement per row (``pair_id``, ``annotator``, ``label``) + a responses table.

For labels from your own labelling tool. The labels file has ``pair_id``, ``label`` and an
optional ``annotator``; ``label`` is A, B or tie (also accepted: a / b, 1 = A, 2 = B,
0 = tie; anything else is counted and dropped). The option ``responses=PATH`` names the
responses table (any supported file type) with ``pair_id``, ``prompt``, ``response_a``,
``response_b``, read in full before the labels. A label whose pair_id is not in the
responses table is an error naming the record; responses that no label refers to are
counted (``unlabelled_pair``). Pair ids are kept as given (not prefixed by the source).
A tie keeps chosen = response_a. ``response_a`` is the one shown first (``chosen_shown_first``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.loaders.common import Context, note_empty, parse_choice, require, row, text
from prefaudit.loaders.io import iter_records

NAME = "generic_long"
LABELS = {"a": "A", "b": "B", "tie": "tie", 1: "A", 2: "B", 0: "tie"}
RESPONSE_FIELDS = ("prompt", "response_a", "response_b")


def sniff(record: Mapping[str, Any]) -> bool:
    return {"pair_id", "label"} <= record.keys() and not record.keys() & {
        "prompt", "chosen", "response_a", "output_1"}


def prepare(ctx: Context) -> None:
    """Read the responses table named by the ``responses`` option into ``ctx.state``."""
    path = ctx.options.get("responses")
    if not path:
        raise ConfigError(f"{ctx.path}: the generic long format needs the responses table: "
                          "pass responses=PATH (CLI: --responses PATH) with columns pair_id, "
                          "prompt, response_a, response_b")
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("responses table not found", path=str(path))
    rctx = Context(path=str(path), source=ctx.source, report=ctx.report)
    table: dict[str, tuple[str, str, str]] = {}
    for line, rec_no, rec in iter_records(path):
        rctx.line, rctx.record = line, rec_no
        pair_id = str(require(rec, "pair_id", rctx))
        if pair_id in table:
            raise rctx.error(f"pair_id {pair_id!r} appears twice in the responses table", field="pair_id")
        prompt, a, b = (text(rec, key, rctx) for key in RESPONSE_FIELDS)
        note_empty(a, "response_a", rctx)
        note_empty(b, "response_b", rctx)
        table[pair_id] = (prompt, a, b)
    ctx.state["responses"] = table
    ctx.state["labelled"] = set()


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    pair_id = str(require(record, "pair_id", ctx))
    responses = ctx.state["responses"].get(pair_id)
    if responses is None:
        raise ctx.error(f"pair_id {pair_id!r} is not in the responses table {ctx.options['responses']}",
                        field="pair_id")
    ctx.state["labelled"].add(pair_id)
    choice = parse_choice(require(record, "label", ctx), LABELS, "label", ctx)
    if choice is None:
        return []
    annotator = record.get("annotator")
    annotator = None if annotator is None or annotator == "" else str(annotator)
    prompt, a, b = responses
    chosen, rejected = (b, a) if choice == "B" else (a, b)
    return [row(ctx, pair_id, prompt, chosen, rejected, annotator=annotator, tie=choice == "tie",
                chosen_shown_first=choice != "B")]


def finish(ctx: Context) -> Iterator[dict[str, Any]]:
    """Count the responses no label refers to (they yield no rows)."""
    labelled = ctx.state["labelled"]
    for rec_no, pair_id in enumerate(ctx.state["responses"], start=1):
        if pair_id not in labelled:
            ctx.report.note("unlabelled_pair", rec_no, "dropped",
                            "a pair in the responses table has no label; left out")
    return iter(())
