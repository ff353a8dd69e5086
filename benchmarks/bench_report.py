"""Benchmark rendering the report of a large audit.

Builds a synthetic audit of N pairs (default 100,000) with all five analyzers: every pair
flagged by every analyzer (N flags each, the worst shown), a 2-D coverage map of N points,
N raw margins for the histogram, a kappa matrix of 12 annotators, per-bin length shares,
a 200-row cluster table, and 20,000-character texts for the worst pairs. Times, in the same
process:

- baseline: ``json.dumps`` of the audit's dict, i.e. writing audit.json, which an audit
  does anyway;
- building the report model, drawing the figures, the HTML, and the PDF.

Prints seconds per stage, the ratio of HTML (model + figures + page) and of the PDF to the
baseline, the HTML size, and whether the targets (HTML and PDF under 30 s together, HTML
under 10 MB) are met; exits 1 when they are not. ``--quick`` runs 10,000 pairs for CI.

    python benchmarks/bench_report.py [--pairs 100000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
from _timing import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from prefaudit.audit import AuditResult, _json_default
from prefaudit.figures import Bars, Heatmap, Histogram, Scatter
from prefaudit.loaders.report import LoadReport
from prefaudit.metrics import declaration
from prefaudit.report.html import draw_figures, html_from_model
from prefaudit.report.model import build_report_model
from prefaudit.report.pdf import pdf_from_model
from prefaudit.results import AnalyzerResult, make_flags

TARGET_S, TARGET_MB = 30.0, 10.0


def synthetic_audit(n: int, seed: int = 0) -> AuditResult:
    rng = np.random.default_rng(seed)
    ids = np.array([f"pair-{i:07d}" for i in range(n)], dtype=object)
    results = {}
    for name in ("hygiene", "agreement", "coverage", "length", "margins"):
        res = AnalyzerResult(name)
        for spec in list(declaration(name))[:12]:
            v = float(rng.random())
            ends = {"low": v * 0.9, "high": min(1.0, v * 1.1)} if spec.interval else {}
            res.add_metric(spec.name, v, **ends)
        res.pair_flags = make_flags(ids, [f"reason_{k}" for k in rng.integers(0, 6, n)], rng.random(n),
                                    [f"synthetic detail {k}" for k in range(n)])
        res.notes.append(f"synthetic {name} result")
        results[name] = res
    annotators = [f"annotator_{k}" for k in range(12)]
    kappa = rng.uniform(0.4, 1.0, (12, 12))
    results["agreement"].add_figure("cohen_kappa",
                                    Heatmap(labels=annotators, matrices=[(kappa + kappa.T) / 2]))
    results["agreement"].add_figure("annotator_reliability", Bars(
        labels=annotators, values={"ds_accuracy": rng.uniform(0.6, 1, 12)}, n=[n] * 12))
    results["coverage"].add_figure("map", Scatter(x=rng.normal(size=n), y=rng.normal(size=n),
                                                  groups=[f"cluster {k}" for k in rng.integers(0, 30, n)]))
    results["coverage"].tables["clusters"] = pd.DataFrame({"label": [f"topic words {k}" for k in range(200)],
                                                           "size": rng.integers(1, 1000, 200)})
    results["length"].add_figure("bias_by_length_ratio", Bars(
        labels=["1-1.1x", "1.1-1.25x", "1.25-1.5x", "1.5-2x", "2-4x", ">4x"],
        values={"share_longer_chosen": rng.uniform(0.5, 0.8, 6)}, n=[n // 6] * 6, reference=0.5))
    counts, edges = np.histogram(rng.normal(size=n), bins=30)
    results["margins"].add_figure("margin_histogram", Histogram(edges=edges, counts={"pairs": counts}))
    result = AuditResult(summary={"n_pairs": n, "n_judgements": n, "sources": ["synthetic"]},
                         load_report=LoadReport(["synthetic.jsonl"], ["trl_standard"], n, n), results=results)
    long_text = "word " * 4000
    for res in results.values():
        worst = res.pair_flags.sort_values("score", ascending=False).head(25)["pair_id"]
        for pid in worst:
            result.examples[pid] = {"prompt": long_text, "chosen": long_text, "rejected": long_text,
                                    "source": "synthetic"}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="10,000 pairs (CI)")
    args = ap.parse_args()
    n = 10_000 if args.quick else args.pairs
    result, t_build = timed(synthetic_audit, n)
    d, t_dict = timed(result.to_dict)
    _, t_base = timed(json.dumps, d, default=_json_default)
    model, t_model = timed(build_report_model, result)
    figures, t_fig = timed(draw_figures, model)
    html, t_html = timed(html_from_model, model, figures)
    pdf, t_pdf = timed(pdf_from_model, model, figures)
    mb = len(html.encode("utf-8")) / 1e6
    t_page = t_model + t_fig + t_html
    print(f"pairs: {n:,} (synthetic audit built in {t_build:.2f} s; to_dict {t_dict:.2f} s)")
    print(f"baseline json.dumps of the audit: {t_base:.2f} s")
    print(f"report model:  {t_model:.2f} s")
    print(f"figures:       {t_fig:.2f} s")
    print(f"html page:     {t_html:.2f} s   -> HTML total {t_page:.2f} s = {t_page / t_base:.1f}x baseline, "
          f"{mb:.2f} MB")
    print(f"pdf:           {t_pdf:.2f} s   -> {t_pdf / t_base:.1f}x baseline, {len(pdf) / 1e6:.2f} MB")
    ok = t_page + t_pdf < TARGET_S and mb < TARGET_MB
    print(f"target (HTML + PDF < {TARGET_S:.0f} s, HTML < {TARGET_MB:.0f} MB): {'met' if ok else 'NOT met'} "
          f"({t_page + t_pdf:.1f} s, {mb:.2f} MB)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
