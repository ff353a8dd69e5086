"""Regenerate ``reports/<sample>/`` (audit.json, report.html, report.pdf) from the bundled sample.

Runs ``prefaudit audit`` on ``sample_data/pandalm_testset_v1.json`` with every analyzer that
is installed and needs no reference model (``margins`` is left out; pass ``--analyzers`` to
choose), under the bundled default policy, so a visitor of the repository can open a real
report.

    python scripts/make_sample_report.py [--sample sample_data/pandalm_testset_v1.json] [--analyzers ...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from prefaudit.audit import ANALYZERS, DEFAULT_ANALYZERS
from prefaudit.cli import EXIT_USAGE, main

REPO = Path(__file__).resolve().parent.parent


def installed_analyzers() -> list[str]:
    """The default analyzers whose modules import here."""
    names = []
    for name in DEFAULT_ANALYZERS:
        try:
            importlib.import_module(ANALYZERS[name].split(":")[0])
        except ImportError:
            continue
        names.append(name)
    return names


def run() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=str(REPO / "sample_data" / "pandalm_testset_v1.json"))
    ap.add_argument("--analyzers", default=None, help="comma-separated (default: the installed default ones)")
    ap.add_argument("--out-root", default=str(REPO / "reports"))
    args = ap.parse_args()
    sample = Path(args.sample)
    analyzers = args.analyzers or ",".join(installed_analyzers())
    out = Path(args.out_root) / sample.name.split(".")[0]
    rc = main(["audit", str(sample.relative_to(REPO) if sample.is_relative_to(REPO) else sample),
               "--analyzers", analyzers, "--out", str(out)])
    # exit 1 means the sample fails the default policy (it does: it has empty responses) — still a report
    return rc if rc == EXIT_USAGE else 0


if __name__ == "__main__":
    sys.exit(run())
