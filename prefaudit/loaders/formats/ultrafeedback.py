"""UltraFeedback (raw): one ``instruction`` with rated ``completions`` -> preference pairs.

Each completion is ``{"model", "response", "overall_score", "fine-grained_score",
"annotations"}``. The rating used is chosen with the option ``rating``:

- ``"overall"`` (default): ``overall_score`` (the critique's 1-10 score);
- ``"fine_grained"``: ``fine-grained_score``, else the mean of the numeric ``Rating`` values
  under ``annotations`` (instruction following, honesty, truthfulness, helpfulness; 1-5).

Pairs (option ``pairs``): ``"best_worst"`` (default) gives one pair per record, the
highest-rated completion against the lowest-rated (earliest wins a level rating);
``"all"`` gives every pair of rated completions. ``strength`` is the rating gap (chosen
minus rejected, >= 0); equal ratings give a tie (chosen/rejected then in completion order).
A completion without a usable rating is counted (``unrated_completion``) and left out;
a record with fewer than two rated completions is counted (``too_few_rated``) and dropped.
Pair ids are ``<source>:<record>:<i>-<j>`` with the completion indices. Each completion's
``model`` is kept (``chosen_model``/``rejected_model``); completions are rated one at a time,
so there is no presentation order.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

from prefaudit.errors import ConfigError
from prefaudit.loaders.common import Context, as_text, note_empty, number, require, row, text

NAME = "ultrafeedback"
PAIRS = ("best_worst", "all")
RATINGS = ("overall", "fine_grained")


def sniff(record: Mapping[str, Any]) -> bool:
    c = record.get("completions")
    return "instruction" in record and isinstance(c, list) and (
        not c or (isinstance(c[0], Mapping) and "response" in c[0]))


def prepare(ctx: Context) -> None:
    for key, allowed, default in (("pairs", PAIRS, "best_worst"), ("rating", RATINGS, "overall")):
        value = ctx.options.get(key, default)
        if value not in allowed:
            raise ConfigError(f"ultrafeedback: option {key}={value!r}; expected one of {', '.join(allowed)}")
        ctx.state[key] = value


def _rating(completion: Mapping[str, Any], how: str) -> float | None:
    if how == "overall":
        return number(completion.get("overall_score"))
    score = number(completion.get("fine-grained_score"))
    if score is not None:
        return score
    annotations = completion.get("annotations")
    if not isinstance(annotations, Mapping):
        return None
    values = [number(a.get("Rating")) for a in annotations.values() if isinstance(a, Mapping)]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def convert(record: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    prompt = text(record, "instruction", ctx)
    completions = require(record, "completions", ctx)
    if not isinstance(completions, list):
        raise ctx.error(f"expected a list of completions, got {type(completions).__name__}",
                        field="completions")
    rated: list[tuple[int, str, float]] = []
    models: dict[int, str | None] = {}
    for i, comp in enumerate(completions):
        if not isinstance(comp, Mapping):
            raise ctx.error(f"completion {i} must be an object", field="completions")
        where = f"completions[{i}].response"
        response = as_text(require(comp, "response", ctx, where=where), "response", ctx, where=where)
        rating = _rating(comp, ctx.state["rating"])
        if rating is None:
            ctx.note("unrated_completion", "dropped",
                     "a completion had no usable rating (missing, N/A or not a number); left out")
            continue
        note_empty(response, "response", ctx)
        model = comp.get("model")
        models[i] = None if model is None else as_text(model, "model", ctx, where=f"completions[{i}].model")
        rated.append((i, response, rating))
    if len(rated) < 2:
        ctx.note("too_few_rated", "dropped", "record has fewer than two rated completions; no pair")
        return []
    if ctx.state["pairs"] == "best_worst":
        best = max(rated, key=lambda c: c[2])
        worst = min(rated, key=lambda c: c[2])
        # all ratings level (max and min both pick the first): the first two, as a tie
        chosen_pairs = [(rated[0], rated[1]) if best is worst else (best, worst)]
    else:
        chosen_pairs = [(a, b) if a[2] >= b[2] else (b, a) for a, b in combinations(rated, 2)]
    rows = []
    for hi, lo in chosen_pairs:
        i, j = sorted((hi[0], lo[0]))
        rows.append(row(ctx, f"{ctx.source}:{ctx.record}:{i}-{j}", prompt, hi[1], lo[1],
                        tie=hi[2] == lo[2], strength=hi[2] - lo[2],
                        chosen_model=models[hi[0]], rejected_model=models[lo[0]]))
    return rows
