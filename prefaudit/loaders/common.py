"""What every format module shares: the per-record context and field readers.

A format module defines ``NAME`` (str), ``sniff(record) -> bool`` (does a record look like
this format?) and ``convert(record, ctx) -> list[dict]`` (the canonical rows of one record).
Field readers raise :class:`DataFormatError` naming file, line/record and field on bad
input, and count every coercion in the :class:`LoadReport`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prefaudit.errors import DataFormatError
from prefaudit.loaders.report import LoadReport

#: The missing ``strength`` of every row (one float object, not one per row).
NAN = math.nan
#: Chat roles a message list may use (TRL's conversational format); others are an error.
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass
class Context:
    """Where a record came from, the report to count into, and format options."""

    path: str
    source: str
    report: LoadReport
    options: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    record: int = 0
    #: per-file working state of the format module (e.g. a joined table, judgements seen)
    state: dict[str, Any] = field(default_factory=dict)

    def error(self, message: str, field: str | None = None) -> DataFormatError:
        return DataFormatError(message, path=self.path, line=self.line, record=self.record,
                               field=field)

    def note(self, reason: str, action: Any, description: str) -> None:
        self.report.note(reason, self.record, action, description)

    @property
    def default_pair_id(self) -> str:
        return f"{self.source}:{self.record}"


def row(ctx: Context, pair_id: str, prompt: str, chosen: str, rejected: str, *,
        annotator: str | None = None, tie: bool = False, strength: float | None = None,
        prompt_messages: list[dict[str, str]] | None = None,
        chosen_messages: list[dict[str, str]] | None = None,
        rejected_messages: list[dict[str, str]] | None = None,
        load_flags: str = "", chosen_shown_first: bool | None = None,
        chosen_model: str | None = None, rejected_model: str | None = None,
        repeat: bool = False) -> dict[str, Any]:
    """One canonical row (see :mod:`prefaudit.schema`). ``chosen_shown_first`` is None when
    the format does not record the presentation order; the model columns appear only when
    a source names the models."""
    out: dict[str, Any] = {
        "pair_id": pair_id, "prompt": prompt, "chosen": chosen, "rejected": rejected,
        "annotator": annotator, "tie": tie,
        "strength": NAN if strength is None else float(strength),
        "source": ctx.source, "load_flags": load_flags, "chosen_shown_first": chosen_shown_first,
    }
    if chosen_model is not None or rejected_model is not None:
        out["chosen_model"] = chosen_model
        out["rejected_model"] = rejected_model
    if repeat:
        out["repeat"] = True
    if prompt_messages is not None:
        out["prompt_messages"] = prompt_messages
        out["chosen_messages"] = chosen_messages
        out["rejected_messages"] = rejected_messages
    return out


def require(record: Mapping[str, Any], key: str, ctx: Context, *, where: str | None = None) -> Any:
    """The value of a required field; missing or null is an error naming ``where`` (default:
    ``key``; e.g. ``completions[2].response`` for a nested field)."""
    if key not in record:
        raise ctx.error(f"missing required field (record has: {', '.join(map(str, record)) or 'no fields'})",
                        field=where or key)
    value = record[key]
    if value is None:
        raise ctx.error("required field is null", field=where or key)
    return value


def text(record: Mapping[str, Any], key: str, ctx: Context, *, required: bool = True,
         default: str = "") -> str:
    """A text field. JSON booleans are coerced to "true"/"false" and counted (a known quirk of
    generated datasets, e.g. PandaLM); numbers, lists and objects are errors."""
    value = record.get(key)
    if type(value) is str:  # the usual case, without the checks below
        return value
    if not required and value is None:
        return default
    return as_text(require(record, key, ctx), key, ctx)


def as_text(value: Any, key: str, ctx: Context, *, where: str | None = None) -> str:
    """Check/coerce one value to text (see :func:`text`); errors name ``where`` (default ``key``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        ctx.note(f"coerced_bool_{key}", "coerced",
                 f"field '{key}' held a JSON boolean, not text; kept as the text 'true'/'false'")
        return str(value).lower()
    raise ctx.error(f"expected text, got {type(value).__name__} ({value!r:.60})", field=where or key)


def note_empty(value: str, key: str, ctx: Context) -> None:
    """Count (and keep) an empty or whitespace-only response; hygiene flags it."""
    if not value or value.isspace():  # no stripped copy of long texts
        ctx.note(f"empty_{key}", "kept", f"field '{key}' is empty or whitespace; kept, flagged by hygiene")


def messages(value: Any, key: str, ctx: Context, *, role_key: str = "role",
             content_key: str = "content", role_map: Mapping[str, str] | None = None
             ) -> list[dict[str, str]]:
    """A list of chat messages as ``[{"role", "content"}]``: roles renamed via ``role_map``,
    or (without one) each one of :data:`ROLES`; any other role is an error."""
    if not isinstance(value, list):
        raise ctx.error(f"expected a list of messages, got {type(value).__name__}", field=key)
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, Mapping) or role_key not in m or content_key not in m:
            raise ctx.error(f"message {j} must be an object with '{role_key}' and '{content_key}'",
                            field=key)
        role = m[role_key]
        known = role_map if role_map is not None else {r: r for r in ROLES}
        if not isinstance(role, str) or role not in known:
            raise ctx.error(f"message {j} has unknown role {role!r}; expected one of "
                            f"{sorted(known)}", field=key)
        out.append({"role": known[role], "content": as_text(m[content_key], key, ctx)})
    return out


def render_messages(msgs: list[dict[str, str]]) -> str:
    """Plain-text rendering of a conversation, HH-RLHF style ("\\n\\nHuman: ...")."""
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "".join(f"\n\n{names.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in msgs)


def parse_choice(value: Any, mapping: Mapping[Any, str], key: str, ctx: Context) -> str | None:
    """Map a label value to "A" / "B" / "tie"; unknown values are counted and give None
    (the caller drops that judgement).

    Text is matched case- and space-insensitively, and text that spells a number ("2",
    "1.5", as CSV cells hold them) is matched as that number, so ``mapping`` needs only
    lower-case text keys and numeric keys.
    """
    norm = value.strip().lower() if isinstance(value, str) else value
    if isinstance(norm, str) and number(norm) is not None:
        norm = float(norm)
    if isinstance(norm, float) and norm.is_integer():
        norm = int(norm)
    if norm in mapping and not isinstance(norm, bool):
        return mapping[norm]
    ctx.note(f"unknown_{key}", "dropped",
             f"field '{key}' had a value outside {sorted(map(str, mapping))}; judgement dropped")
    return None


def number(value: Any) -> float | None:
    """A finite number from a number or numeric text; None for anything else (booleans,
    "N/A", NaN, null)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def id_text(value: Any, key: str, ctx: Context) -> str | None:
    """An id value as text; None for null or NaN (a missing id).

    Text is kept as is and integers are written in digits; a float with an integral value (a
    parquet or pandas column of ids that held a null) is written as that integer and counted
    (``float_id``); any other float, a boolean, a list or an object is an error naming ``key``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        ctx.note("float_id", "coerced", "an id stored as a float with an integral value (e.g. 3.0); "
                 "used as the integer text ('3')")
        return str(int(value))
    raise ctx.error(f"expected an id as text or an integer, got {type(value).__name__} ({value!r:.40})",
                    field=key)


def pair_id_of(record: Mapping[str, Any], ctx: Context, keys: tuple[str, ...] = ("pair_id", "id")) -> str:
    """The pair id from the first of ``keys`` the record has (see :func:`id_text`); without
    one, :attr:`Context.default_pair_id`. A null id gets that generated id too, counted as
    ``null_id``, so two null ids never collide."""
    key = next((k for k in keys if k in record), None)
    if key is None:
        return ctx.default_pair_id
    value = id_text(record[key], key, ctx)
    if value is None:
        ctx.note("null_id", "repaired", f"field '{key}' is null; the pair got the generated id "
                 "'<source>:<record>'")
        return ctx.default_pair_id
    return value


def score(record: Mapping[str, Any], key: str, ctx: Context) -> float | None:
    """A numeric score field; None when absent, null or an empty CSV cell.

    Numbers and numeric text become a float. A value that is not finite (NaN, ``"NaN"``,
    ``1e400``) is counted (``non_finite_score``) and gives None; a boolean or other text is an
    error naming ``key``.
    """
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ctx.error(f"expected a number, got {type(value).__name__} ({value!r:.40})", field=key)
    try:
        x = float(value)
    except ValueError:
        raise ctx.error(f"expected a number, got {value!r:.40}", field=key) from None
    except OverflowError:  # an int too large for a float
        x = math.inf
    if not math.isfinite(x):
        ctx.note("non_finite_score", "coerced",
                 f"a score (e.g. in '{key}') is not a finite number (NaN or infinite); left out")
        return None
    return x


def instruction_prompt(instruction: str, input_text: str) -> str:
    """Alpaca-style prompt text: the instruction, then the input (if any) after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text.strip() else instruction


def content_id(ctx: Context, *parts: str) -> str:
    """A pair id from the content itself (source-prefixed SHA-1 of ``parts``), so every
    judgement of the same comparison gets the same id wherever it appears in the file."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{ctx.source}:{digest}"


def judged_before(ctx: Context, pair_id: str, annotator: str | None) -> bool:
    """True when ``annotator`` already judged ``pair_id`` in this file. The repeat is kept
    as a ``repeat`` row and counted (``repeat_judgement``): the judges analyzer reads it for
    swap consistency, every other analyzer counts the annotator's first judgement only."""
    seen: set[str | tuple[str, str]] | None = ctx.state.get("judged")
    if seen is None:
        seen = ctx.state["judged"] = set()
    # a judgement without an annotator is keyed by its pair id alone (never equal to a tuple):
    # no tuple kept per row
    key = pair_id if annotator is None else (pair_id, annotator)
    if key in seen:
        ctx.note("repeat_judgement", "kept",
                 "the same annotator judged the same comparison again; kept as a repeat (used for "
                 "swap consistency only, not counted twice)")
        return True
    seen.add(key)
    return False
