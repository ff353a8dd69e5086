"""TRL implicit-prompt format / Anthropic HH-RLHF: ``chosen``/``rejected`` are whole conversations.

The two conversations share a prefix; the prompt is that prefix.

Text transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") are split at the *last*
"\\n\\nAssistant:" turn marker, so the prompt always ends at a turn boundary (never mid-word,
the failure of a character-level common prefix when both answers start alike). Message lists
are split before the last assistant message.

Cases TRL users report as bugs are kept and counted, never mangled:
- chosen and rejected identical: kept (hygiene flags it);
- transcripts whose text before the last assistant turn differs: kept with the chosen
  side's prompt, counted as ``prefix_mismatch`` and marked in ``load_flags``.
"""

from __future__ import annotations

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
)

NAME = "hh_rlhf"
ASSISTANT = "\n\nAssistant:"


def sniff(record: Mapping[str, Any]) -> bool:
    if "prompt" in record or not {"chosen", "rejected"} <= record.keys():
        return False
    c = record["chosen"]
    return (isinstance(c, str) and ASSISTANT in c) or (
        isinstance(c, list) and bool(c) and isinstance(c[0], Mapping) and "role" in c[0])


def split_transcript(transcript: str) -> tuple[str, str] | None:
    """(prompt ending with "\\n\\nAssistant:", final answer stripped), or None if no turn."""
    i = transcript.rfind(ASSISTANT)
    if i < 0:
        return None
    cut = i + len(ASSISTANT)
    return transcript[:cut], transcript[cut:].strip()


def _split_messages(msgs: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]] | None:
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i]["role"] == "assistant":
            return msgs[:i], msgs[i:]
    return None


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    raw_c, raw_r = require(record, "chosen", ctx), require(record, "rejected", ctx)
    pair_id = pair_id_of(record, ctx)
    if isinstance(raw_c, list) or isinstance(raw_r, list):
        cm, rm = messages(raw_c, "chosen", ctx), messages(raw_r, "rejected", ctx)
        sc, sr = _split_messages(cm), _split_messages(rm)
        if sc is None or sr is None:
            raise ctx.error("conversation has no assistant message",
                            field="chosen" if sc is None else "rejected")
        flags = _check_prefix(sc[0] == sr[0], raw_c == raw_r, ctx)
        prompt_msgs = sc[0]
        chosen = "\n\n".join(m["content"] for m in sc[1])
        rejected = "\n\n".join(m["content"] for m in sr[1])
        note_empty(chosen, "chosen", ctx)
        note_empty(rejected, "rejected", ctx)
        return [row(ctx, pair_id, render_messages(prompt_msgs), chosen, rejected,
                    prompt_messages=prompt_msgs, chosen_messages=sc[1], rejected_messages=sr[1],
                    load_flags=flags)]
    tc, tr = as_text(raw_c, "chosen", ctx), as_text(raw_r, "rejected", ctx)
    sc, sr = split_transcript(tc), split_transcript(tr)
    if sc is None or sr is None:
        raise ctx.error("transcript has no '\\n\\nAssistant:' turn; expected an HH-RLHF style "
                        "conversation", field="chosen" if sc is None else "rejected")
    flags = _check_prefix(sc[0] == sr[0], tc == tr, ctx)
    note_empty(sc[1], "chosen", ctx)
    note_empty(sr[1], "rejected", ctx)
    return [row(ctx, pair_id, sc[0], sc[1], sr[1], load_flags=flags)]


def _check_prefix(same_prefix: bool, identical: bool, ctx: Context) -> str:
    if identical:
        ctx.note("identical_transcripts", "kept",
                 "chosen and rejected transcripts are identical; kept, flagged by hygiene")
    if same_prefix:
        return ""
    ctx.note("prefix_mismatch", "flagged",
             "chosen and rejected differ before the last assistant turn; kept with the chosen "
             "side's prompt and marked 'prefix_mismatch'")
    return "prefix_mismatch"
