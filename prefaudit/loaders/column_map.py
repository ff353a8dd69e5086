"""Column map: any schema, by naming which source field is which canonical field.

Two shapes (``--columns`` on the command line, ``columns=`` in :func:`prefaudit.load`):

* chosen/rejected: ``prompt=question,chosen=good,rejected=bad``;
* A/B plus a label: ``prompt=prompt,response_a=response 1,response_b=response 2,label=label``
  with label values ``--label-values "0=a,1=b,2=tie"`` (``label_values=`` in Python).

Optional in both: ``annotator=`` (one judgement per record; records of the same comparison
share a pair id), ``strength=`` (a margin field), ``id=`` (the pair id, kept as given).
Score fields give ``strength`` as the preferred response's score minus the other's:
``score_chosen=``/``score_rejected=`` in the first shape, ``score_a=``/``score_b=`` in the second.

Field names may contain spaces; a dotted path (``meta.instruction``) reads a nested field
when no top-level field has that exact name. Any text field may hold a message list
(``{"role", "content"}`` or ShareGPT ``{"from", "value"}`` turns); then all three sides keep
message lists (a text prompt becomes one user message, a text response one assistant
message). Label values match by their text, so ``0`` and ``"0"`` (and ``1.0``) are the same
value; a value not in the label values is an error naming the record and field, as is a
mapped field that a record lacks (with the closest existing field names). A tie keeps
chosen = response A. Response A is the response shown first (presentation order).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from prefaudit.errors import ConfigError
from prefaudit.loaders.common import (
    Context,
    as_text,
    content_id,
    judged_before,
    messages,
    note_empty,
    number,
    render_messages,
    row,
)
from prefaudit.loaders.formats.llama_factory import ROLES

NAME = "column_map"
#: The two shapes: the canonical fields each one requires.
SHAPES: dict[str, tuple[str, ...]] = {
    "chosen/rejected": ("prompt", "chosen", "rejected"),
    "A/B plus a label": ("prompt", "response_a", "response_b", "label"),
}
#: Optional fields per shape (beyond ``annotator``, ``strength`` and ``id``, allowed in both).
SHAPE_SCORES: dict[str, tuple[str, str]] = {
    "chosen/rejected": ("score_chosen", "score_rejected"),
    "A/B plus a label": ("score_a", "score_b"),
}
COMMON_OPTIONAL: tuple[str, ...] = ("annotator", "strength", "id")
TARGETS: tuple[str, ...] = tuple(dict.fromkeys(
    [t for fields in SHAPES.values() for t in fields]
    + [t for pair in SHAPE_SCORES.values() for t in pair] + list(COMMON_OPTIONAL)))
#: What a label value may mean (case-insensitive in ``--label-values``).
CHOICES: dict[str, str] = {"a": "A", "b": "B", "tie": "tie"}


def sniff(record: Mapping[str, Any]) -> bool:
    """Never detected: a column map is always asked for (``columns=``)."""
    return False


def parse_columns(spec: str | Mapping[str, str]) -> dict[str, str]:
    """``{"prompt": "question", ...}`` from ``"prompt=question,..."`` or a mapping, checked
    against :data:`SHAPES` (raises :class:`ConfigError` naming the bad part)."""
    if isinstance(spec, str):
        pairs = []
        for part in (p for p in spec.split(",") if p.strip()):
            target, sep, source = part.partition("=")
            if not sep or not target.strip() or not source.strip():
                raise ConfigError(f"--columns: {part.strip()!r} is not TARGET=FIELD "
                                  "(e.g. prompt=question,chosen=good,rejected=bad)")
            pairs.append((target.strip(), source.strip()))
    elif isinstance(spec, Mapping):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        raise ConfigError(f"columns: expected 'TARGET=FIELD,...' or a dict, got {type(spec).__name__}")
    mapping: dict[str, str] = {}
    for target, source in pairs:
        if target not in TARGETS:
            close = difflib.get_close_matches(target, TARGETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--columns: unknown target {target!r}{hint}; targets: {', '.join(TARGETS)}")
        if target in mapping:
            raise ConfigError(f"--columns: {target!r} is mapped twice")
        mapping[target] = source
    shape_of(mapping)
    return mapping


def shape_of(mapping: Mapping[str, str]) -> str:
    """The name of the shape ``mapping`` has (see :data:`SHAPES`)."""
    for shape, required in SHAPES.items():
        if set(required) <= mapping.keys():
            allowed = set(required) | set(SHAPE_SCORES[shape]) | set(COMMON_OPTIONAL)
            extra = sorted(mapping.keys() - allowed)
            if extra:
                raise ConfigError(f"--columns: {', '.join(extra)} cannot be mapped in the {shape} shape")
            return shape
    wanted = "; or ".join(", ".join(f) for f in SHAPES.values())
    raise ConfigError(f"--columns must map {wanted} (got {', '.join(mapping) or 'nothing'})")


def label_key(value: Any) -> str | None:
    """The text a label value matches by: ``0``, ``"0"``, ``0.0`` and ``" 0 "`` all give ``"0"``;
    text is case-insensitive. None for values that are not text, numbers or booleans."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        x = number(value)
        return value.strip().lower() if x is None else label_key(x)
    if isinstance(value, (int, float)) and number(value) is not None:
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return None


def parse_label_values(spec: str | Mapping[Any, str]) -> dict[str, str]:
    """``{label_key(value): "A" | "B" | "tie"}`` from ``"0=a,1=b,2=tie"`` or a mapping."""
    if isinstance(spec, str):
        items = []
        for part in (p for p in spec.split(",") if p.strip()):
            value, sep, meaning = part.rpartition("=")
            if not sep or not value.strip():
                raise ConfigError(f"--label-values: {part.strip()!r} is not VALUE=a|b|tie "
                                  "(e.g. 0=a,1=b,2=tie)")
            items.append((value, meaning))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        raise ConfigError(f"label_values: expected 'VALUE=a|b|tie,...' or a dict, got {type(spec).__name__}")
    out: dict[str, str] = {}
    for value, meaning in items:
        choice = CHOICES.get(str(meaning).strip().lower())
        key = label_key(value)
        if choice is None or key is None:
            raise ConfigError(f"--label-values: {value!r}={meaning!r}: the meaning must be a, b or tie")
        if key in out and out[key] != choice:
            raise ConfigError(f"--label-values: the value {key!r} is given two meanings")
        out[key] = choice
    if not out:
        raise ConfigError("--label-values is empty; expected VALUE=a|b|tie pairs such as 0=a,1=b,2=tie")
    return out


def options(columns: str | Mapping[str, str], label_values: str | Mapping[Any, str] | None) -> dict[str, Any]:
    """The loader options of a column map: the parsed ``columns`` and ``label_values``,
    checked together (a label field needs label values, and label values need a label)."""
    mapping = parse_columns(columns)
    if "label" in mapping and label_values is None:
        raise ConfigError(f"--columns maps label={mapping['label']!r}: give --label-values too "
                          "(e.g. 0=a,1=b,2=tie)")
    if "label" not in mapping and label_values is not None:
        raise ConfigError("--label-values needs a label field in --columns (label=FIELD)")
    labels = parse_label_values(label_values) if label_values is not None else None
    return {"columns": mapping, "label_values": labels}


def field_value(record: Mapping[str, Any], path: str, ctx: Context, *, required: bool = True) -> Any:
    """The value at ``path`` (an exact field name, else a dotted path into nested objects).

    A missing field is an error naming the closest existing field names (or None when
    ``required`` is false); a null required field is an error."""
    if path in record:
        value = record[path]
    else:
        node: Any = record
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if not required:
                    return None
                keys = [str(k) for k in (node if isinstance(node, Mapping) else record)]
                close = difflib.get_close_matches(part, keys, n=3, cutoff=0.3) or keys[:8]
                raise ctx.error(f"mapped field is missing; closest fields: {', '.join(close) or 'none'}",
                                field=path)
            node = node[part]
        value = node
    if value is None and required:
        raise ctx.error("mapped field is null", field=path)
    return value


def _side(value: Any, path: str, ctx: Context) -> tuple[str, list[dict[str, str]] | None]:
    """(text, message list or None) of one prompt/response value."""
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, list):
        first = value[0] if value and isinstance(value[0], Mapping) else {}
        sharegpt = "from" in first and "role" not in first
        msgs = messages(value, path, ctx, role_key="from" if sharegpt else "role",
                        content_key="value" if sharegpt else "content",
                        role_map=ROLES if sharegpt else None)
        return "", msgs
    return as_text(value, path, ctx), None


def _score(record: Mapping[str, Any], path: str | None, ctx: Context) -> float | None:
    if path is None:
        return None
    value = field_value(record, path, ctx, required=False)
    if value is None or value == "":
        return None
    x = number(value)
    if x is None:
        raise ctx.error(f"expected a number, got {value!r:.40}", field=path)
    return x


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    cols: dict[str, str] = ctx.options["columns"]
    shape = shape_of(cols)
    first_key, second_key = SHAPES[shape][1:3]
    (p_text, pm), (a_text, am), (b_text, bm) = (
        _side(field_value(record, cols[k], ctx), cols[k], ctx) for k in ("prompt", first_key, second_key))
    if pm is not None or am is not None or bm is not None:
        pm = pm if pm is not None else [{"role": "user", "content": p_text}]
        am = am if am is not None else [{"role": "assistant", "content": a_text}]
        bm = bm if bm is not None else [{"role": "assistant", "content": b_text}]
        p_text = render_messages(pm)
        a_text, b_text = ("\n\n".join(m["content"] for m in ms) for ms in (am, bm))
    note_empty(a_text, first_key, ctx)
    note_empty(b_text, second_key, ctx)

    choice = "A"
    if "label" in cols:
        value = field_value(record, cols["label"], ctx)
        choice = ctx.options["label_values"].get(label_key(value))
        if choice is None:
            known = ", ".join(ctx.options["label_values"])
            raise ctx.error(f"label value {value!r:.40} is not in --label-values (known: {known})",
                            field=cols["label"])
    score_a, score_b = (_score(record, cols.get(k), ctx) for k in SHAPE_SCORES[shape])
    strength = _score(record, cols.get("strength"), ctx)
    if strength is None and score_a is not None and score_b is not None:
        strength = score_b - score_a if choice == "B" else score_a - score_b

    annotator = None
    if "annotator" in cols:
        ann = field_value(record, cols["annotator"], ctx, required=False)
        annotator = None if ann is None else str(ann)
    if "id" in cols:
        pair_id = str(field_value(record, cols["id"], ctx))
    elif annotator is not None:  # judgements of one comparison share an id, whatever their A/B order
        pair_id = content_id(ctx, p_text, *sorted((a_text, b_text)))
    else:
        pair_id = ctx.default_pair_id
    repeat = annotator is not None and judged_before(ctx, pair_id, annotator)
    if choice == "B":
        a_text, b_text, am, bm = b_text, a_text, bm, am
    shown_first = (choice != "B") if "label" in cols else None  # response_a is the one shown first
    return [row(ctx, pair_id, p_text, a_text, b_text, annotator=annotator, tie=choice == "tie",
                strength=strength, prompt_messages=pm, chosen_messages=am, rejected_messages=bm,
                chosen_shown_first=shown_first, repeat=repeat)]
