#!/usr/bin/env bash
# Gate a preference dataset before DPO training.
#
#   examples/ci/pretrain_gate.sh DATA [POLICY] [OUT]
#
# Runs the audit with the policy, writes OUT/audit.json, OUT/verdict.json, OUT/report.html and
# OUT/gate-junit.xml, and exits with the gate's code: 0 pass (or warn), 1 fail, 2 bad input.
# Set PREFAUDIT_STRICT=1 to fail on warnings too. Nothing is downloaded: the analyzers use models
# that ship in pip packages, and HF_HUB_OFFLINE is set.
set -euo pipefail

data="${1:?usage: pretrain_gate.sh DATA [POLICY] [OUT]}"
policy="${2:-}"
out="${3:-prefaudit_gate}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

args=(audit "$data" --out "$out" --junit "$out/gate-junit.xml" --no-pdf)
[[ -n "$policy" ]] && args+=(--policy "$policy")
[[ "${PREFAUDIT_STRICT:-0}" == "1" ]] && args+=(--strict)

set +e
prefaudit "${args[@]}"
code=$?
set -e
case "$code" in
  0) echo "prefaudit gate: passed; see $out/verdict.json" ;;
  1) echo "prefaudit gate: FAILED; training must not start (reasons in $out/verdict.json)" >&2 ;;
  *) echo "prefaudit gate: bad input or usage (exit $code)" >&2 ;;
esac
exit "$code"
