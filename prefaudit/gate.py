"""The gate: a policy of thresholds on audit metrics decides PASS, WARN or FAIL.

A policy is a TOML file with one table per rule, keyed by the metric it tests::

    [policy]
    name = "team-default"                       # optional
    description = "what this policy is for"     # optional

    [rules."length.share_longer_chosen"]
    max = 0.65                                  # the metric must be <= max (and >= min, if given)
    severity = "fail"                           # or "warn"
    required = false                            # true: a metric that was not measured counts too
    message = "the data teaches 'be longer'"    # optional, shown with the outcome

:func:`apply_policy` checks each rule against an audit's flat metrics and returns a
:class:`Verdict`: FAIL if any fail-severity rule is violated, WARN if only warn-severity rules
are, PASS otherwise. A rule whose metric is missing or could not be measured is *not measured*;
it counts (at the rule's severity) only when the rule says ``required = true``.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from prefaudit.errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Metric names each analyzer can produce (without the ``<analyzer>.`` prefix). A rule may
#: name any of them, or one of them with ``_low`` / ``_high`` (the ends of its interval).
KNOWN_METRICS: dict[str, tuple[str, ...]] = {
    "hygiene": (
        "n_pairs", "empty_response_share", "identical_pair_share", "exact_duplicate_pair_share",
        "duplicate_pair_share", "contradiction_share", "duplicate_prompt_share", "n_unique_prompts",
        "truncated_share", "length_outlier_share", "encoding_damage_share", "load_flagged_share",
        "flagged_share",
    ),
    "agreement": (
        "n_annotators", "n_pairs_multi", "mean_labels_per_pair", "raw_agreement", "raw_agreement_no_ties",
        "krippendorff_alpha", "fleiss_kappa", "mean_cohen_kappa", "tie_label_share", "flip_rate",
        "contested_share", "consensus_disagrees_share", "ds_iterations", "min_annotator_accuracy",
    ),
    "coverage": (
        "n_clusters", "effective_clusters", "largest_cluster_share", "n_unique_prompts", "near_duplicate_share",
        "semantic_duplicate_share", "n_near_duplicate_pairs", "n_reversed_duplicate_pairs",
        "target_uncovered_share", "target_mean_nn_similarity", "n_target_prompts",
        "n_uncovered_target_clusters", "unneeded_pair_share",
    ),
    "length": (
        "n_pairs", "n_ties_excluded", "n_equal_length", "chosen_chars_median", "chosen_words_mean",
        "rejected_chars_median", "rejected_words_mean", "mean_log_length_ratio", "share_longer_chosen",
        "share_longer_chosen_unequal", "share_longer_chosen_tokens", "binomial_p", "length_biased",
        "length_accuracy", "length_auc", "logit_slope", "balanced_pairs_dropped", "balanced_share_dropped",
        "balanced_share_longer_chosen", "balanced_length_accuracy", "balanced_length_auc",
        "balanced_logit_slope", "n_clusters_biased", "max_cluster_share_longer_chosen",
        "share_chosen_much_longer", "n_longer_chosen_low_support", "strength_spearman", "strength_spearman_p",
        "share_over_budget", "share_prompt_over_budget",
        "prompt_tokens_mean", "prompt_tokens_p50", "prompt_tokens_p95", "prompt_tokens_max",
        "chosen_tokens_mean", "chosen_tokens_p50", "chosen_tokens_p95", "chosen_tokens_max",
        "rejected_tokens_mean", "rejected_tokens_p50", "rejected_tokens_p95", "rejected_tokens_max",
    ),
    "margins": (
        "n_pairs_scored", "n_ties_skipped", "reference_accuracy", "share_reference_prefers_rejected",
        "median_margin", "median_margin_per_token", "median_rejected_preference", "share_near_zero_margin",
        "share_chosen_ood", "margin_length_correlation", "margin_support_correlation", "dpo_reward_scale",
        "share_truncated",
        "ches_median", "share_positive_ches",
    ),
}
SEVERITIES: tuple[str, ...] = ("fail", "warn")
RULE_KEYS: frozenset[str] = frozenset({"min", "max", "severity", "required", "message"})
STATUSES: tuple[str, ...] = ("pass", "warn", "fail")
NOT_MEASURED = "not_measured"


@dataclass(frozen=True)
class Rule:
    """One threshold: ``min <= metric <= max`` (either bound may be absent)."""

    metric: str
    min: float | None = None
    max: float | None = None
    severity: str = "fail"
    required: bool = False
    message: str = ""

    def describe(self) -> str:
        """The threshold in words, e.g. ``"<= 0.65"`` or ``"in [0.4, 0.6]"``."""
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


@dataclass(frozen=True)
class Policy:
    """A named set of rules; ``source`` is the file it came from."""

    rules: tuple[Rule, ...]
    name: str = "policy"
    description: str = ""
    source: str = "<memory>"


@dataclass(frozen=True)
class RuleOutcome:
    """How one rule fared: ``status`` is pass, warn, fail or not_measured."""

    metric: str
    status: str
    observed: float | None
    threshold: str
    severity: str
    required: bool
    message: str

    def reason(self) -> str:
        """One line a CI log can show."""
        seen = "not measured" if self.observed is None else f"{self.observed:.4g}"
        text = f"{self.metric} = {seen} (limit {self.threshold}, {self.severity})"
        return f"{text}: {self.message}" if self.message else text


@dataclass
class Verdict:
    """The gate's decision and each rule's outcome.

    ``status`` is ``"fail"`` when any fail-severity rule is violated (or is required and not
    measured), ``"warn"`` when only warn-severity rules are, and ``"pass"`` otherwise.
    """

    status: str
    outcomes: list[RuleOutcome]
    policy: str
    policy_source: str
    data_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """One line per rule that failed or warned, fails first."""
        bad = [o for o in self.outcomes if o.status == "fail"] + [o for o in self.outcomes if o.status == "warn"]
        return [f"{o.status.upper()}: {o.reason()}" for o in bad]

    def exit_code(self, strict: bool = False) -> int:
        """1 on fail (and on warn when ``strict``), else 0."""
        return int(self.status == "fail" or (strict and self.status == "warn"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``verdict.json`` and into ``audit.json``."""
        counts = {s: sum(o.status == s for o in self.outcomes) for s in (*STATUSES, NOT_MEASURED)}
        return {"status": self.status, "policy": self.policy, "policy_source": self.policy_source,
                "data_sha256": self.data_sha256, "counts": counts, "reasons": self.reasons,
                "rules": [asdict(o) for o in self.outcomes], **self.extra}

    def to_junit_xml(self, strict: bool = False) -> str:
        """JUnit XML with one test case per rule, so CI shows each rule as a test.

        Violated fail rules (and warn rules when ``strict``) are ``<failure>``; warnings
        otherwise pass with the warning in ``<system-out>``; not-measured rules are ``<skipped>``.
        """
        suite = ET.Element("testsuite", name=f"prefaudit-gate ({self.policy})", tests=str(len(self.outcomes)))
        failures = skipped = 0
        for o in self.outcomes:
            case = ET.SubElement(suite, "testcase", classname="prefaudit.gate", name=o.metric)
            if o.status == "fail" or (strict and o.status == "warn"):
                failures += 1
                ET.SubElement(case, "failure", message=o.reason(), type=o.status).text = o.reason()
            elif o.status == "warn":
                ET.SubElement(case, "system-out").text = f"WARN: {o.reason()}"
            elif o.status == NOT_MEASURED:
                skipped += 1
                ET.SubElement(case, "skipped", message=o.reason())
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
        root = ET.Element("testsuites", name="prefaudit")
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def known_metric_names() -> frozenset[str]:
    """Every metric name a rule may use (``<analyzer>.<metric>`` and its ``_low``/``_high``)."""
    names = {f"{a}.{m}" for a, ms in KNOWN_METRICS.items() for m in ms}
    return frozenset(names | {f"{n}_{end}" for n in names for end in ("low", "high")})


def default_policy_path() -> Path:
    """The bundled default policy file."""
    return Path(str(resources.files("prefaudit") / "policies" / "default.toml"))


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and check a policy file (the bundled default when ``path`` is None).

    Raises :class:`~prefaudit.errors.PolicyError` naming the file and the key at fault for a
    missing file, invalid TOML, an unknown key or metric, or a bad threshold.
    """
    p = default_policy_path() if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: no such policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{p}: cannot read policy file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{p}: invalid TOML ({exc})") from None
    return parse_policy(data, source=str(p))


def parse_policy(data: Mapping[str, Any], source: str = "<memory>") -> Policy:
    """Check a policy given as a mapping (the parsed TOML) and return it."""
    unknown = sorted(set(data) - {"policy", "rules"})
    if unknown:
        raise PolicyError(f"{source}: unknown top-level key(s) {unknown}; expected [policy] and [rules.\"<metric>\"]")
    meta = data.get("policy", {})
    if not isinstance(meta, Mapping) or set(meta) - {"name", "description"}:
        raise PolicyError(f"{source}: [policy] may only hold 'name' and 'description'")
    rules_data = data.get("rules")
    if not isinstance(rules_data, Mapping) or not rules_data:
        raise PolicyError(f"{source}: no rules; add tables like [rules.\"length.share_longer_chosen\"] with max = 0.65")
    known = known_metric_names()
    rules = tuple(_parse_rule(metric, spec, source, known) for metric, spec in rules_data.items())
    return Policy(rules=rules, name=str(meta.get("name", Path(source).stem)),
                  description=str(meta.get("description", "")), source=source)


def _parse_rule(metric: str, spec: Any, source: str, known: frozenset[str]) -> Rule:
    where = f'{source}: rules."{metric}"'
    if metric not in known:
        close = difflib.get_close_matches(metric, sorted(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; see prefaudit.gate.KNOWN_METRICS"
        raise PolicyError(f"{where}: unknown metric '{metric}'{hint}")
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{where}: expected a table with min/max/severity, got {type(spec).__name__}")
    extra = sorted(set(spec) - RULE_KEYS)
    if extra:
        raise PolicyError(f"{where}.{extra[0]}: unknown key; allowed: {sorted(RULE_KEYS)}")
    bounds = {}
    for key in ("min", "max"):
        v = spec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise PolicyError(f"{where}.{key}: expected a finite number, got {v!r}")
        bounds[key] = None if v is None else float(v)
    if bounds["min"] is None and bounds["max"] is None:
        raise PolicyError(f"{where}: needs 'min', 'max' or both")
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise PolicyError(f"{where}: min ({bounds['min']:g}) is greater than max ({bounds['max']:g})")
    severity = spec.get("severity", "fail")
    if severity not in SEVERITIES:
        raise PolicyError(f"{where}.severity: expected one of {list(SEVERITIES)}, got {severity!r}")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise PolicyError(f"{where}.required: expected true or false, got {required!r}")
    message = spec.get("message", "")
    if not isinstance(message, str):
        raise PolicyError(f"{where}.message: expected a string, got {message!r}")
    return Rule(metric, bounds["min"], bounds["max"], severity, required, message)


def apply_policy(audit: Any, policy: Policy | str | Path | None = None) -> Verdict:
    """Check an audit against a policy.

    Parameters
    ----------
    audit:
        An :class:`~prefaudit.audit.AuditResult`, the dict of an ``audit.json`` (with a
        ``metrics`` key), or a flat mapping ``{"<analyzer>.<metric>": value}``.
    policy:
        A :class:`Policy`, a path to a policy file, or None for the bundled default.
    """
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    metrics, sha = _metrics_of(audit)
    outcomes = [_check(rule, metrics.get(rule.metric)) for rule in policy.rules]
    statuses = {o.status for o in outcomes}
    status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    return Verdict(status=status, outcomes=outcomes, policy=policy.name, policy_source=policy.source,
                   data_sha256=sha)


def _metrics_of(audit: Any) -> tuple[Mapping[str, Any], str | None]:
    if hasattr(audit, "metrics") and hasattr(audit, "summary"):
        return audit.metrics, audit.summary.get("content_sha256")
    if isinstance(audit, Mapping) and isinstance(audit.get("metrics"), Mapping):
        return audit["metrics"], (audit.get("summary") or {}).get("content_sha256")
    if isinstance(audit, Mapping):
        return audit, None
    raise TypeError(f"apply_policy() needs an AuditResult, an audit.json dict or a metrics mapping, "
                    f"got {type(audit).__name__}")


def _check(rule: Rule, value: Any) -> RuleOutcome:
    observed = _number(value)
    if observed is None:
        status = rule.severity if rule.required else NOT_MEASURED
    else:
        low_ok = rule.min is None or observed >= rule.min
        high_ok = rule.max is None or observed <= rule.max
        status = "pass" if low_ok and high_ok else rule.severity
    return RuleOutcome(rule.metric, status, observed, rule.describe(), rule.severity, rule.required, rule.message)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
