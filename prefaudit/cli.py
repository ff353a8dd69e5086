"""Command line: ``prefaudit inspect | audit ...``.

Exit codes: 0 pass, 1 the gate failed, 2 bad input or usage (one or two lines on stderr,
never a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from prefaudit.errors import PrefauditError  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="data file(s) or folder(s): .jsonl/.json/.csv/.parquet, .gz ok")
    p.add_argument("--format", default="auto", help="input format (default: detect); see `prefaudit formats`")
    p.add_argument("--pairs", choices=["best_worst", "all"], default=None,
                   help="UltraFeedback: best-vs-worst completion (default) or all pairs")
    p.add_argument("--responses", default=None,
                   help="generic long table: the responses file (pair_id, prompt, response_a, response_b)")


def _load(args: argparse.Namespace):  # -> Loaded
    from prefaudit.loaders import load

    options = {k: v for k, v in (("pairs", args.pairs), ("responses", args.responses)) if v is not None}
    data = args.data[0] if len(args.data) == 1 else args.data
    return load(data, format=args.format, **options)


def cmd_inspect(args: argparse.Namespace) -> int:
    from prefaudit.audit import summarize_table

    table, report = _load(args)
    info = {"formats": sorted(set(report.formats)), **summarize_table(table),
            "load_report": report.to_dict()}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_PASS
    print(f"format(s):   {', '.join(info['formats'])}")
    print(f"records:     {report.n_records}")
    print(f"judgements:  {info['n_judgements']}")
    print(f"pairs:       {info['n_pairs']}")
    print(f"annotators:  {info['n_annotators']}" + (" (multi-annotator)" if info["multi_annotator"] else ""))
    print(f"ties:        {info['n_ties']}")
    print(f"prompts:     {info['n_unique_prompts']} unique" + (", conversational" if info["conversational"] else ""))
    lines = report.summary_lines()
    print("load report: " + ("nothing dropped, repaired or coerced" if not lines else ""))
    for line in lines:
        print("  " + line)
    return EXIT_PASS


def _analyzer_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    opts: dict[str, dict[str, Any]] = {
        "length": {k: v for k, v in (("tokenizer", args.tokenizer), ("max_length", args.max_length)) if v is not None},
        "coverage": {**cache, **{k: v for k, v in (("embedding_model", args.embedding_model),) if v is not None}},
        "margins": {**cache, **{k: v for k, v in (("reference_model", args.reference_model), ("beta", args.beta),
                                                    ("max_length", args.max_length)) if v is not None}},
    }
    if args.target:
        from prefaudit.loaders.prompts import load_prompts

        opts["coverage"]["target"] = load_prompts(args.target)
    return {k: v for k, v in opts.items() if v}


def cmd_audit(args: argparse.Namespace) -> int:
    from prefaudit.audit import audit
    from prefaudit.gate import load_policy

    policy = None if args.no_gate else load_policy(args.policy)  # a bad policy fails before the work
    loaded = _load(args)
    analyzers = [a.strip() for a in args.analyzers.split(",") if a.strip()] if args.analyzers else None
    result = audit(loaded.table, analyzers, load_report=loaded.report, seed=args.seed,
                   options=_analyzer_options(args),
                   config={"data": [str(p) for p in args.data], "format": args.format})
    verdict = None if policy is None else _run_gate(result, policy, args, args.out)
    if verdict is not None:
        result.verdict = verdict.to_dict()
    paths = result.write(args.out)
    print(f"wrote {paths['audit']} and {paths['pair_flags']}", file=sys.stderr)
    _write_reports(result, args.out, pdf=not args.no_pdf)
    _print_metrics(result.metrics)
    if verdict is None:
        return EXIT_PASS
    _print_verdict(verdict)
    return verdict.exit_code(args.strict)


def _write_reports(result: Any, out_dir: str | Path, *, pdf: bool) -> None:
    from prefaudit.report import write_reports

    paths = write_reports(result, out_dir, pdf=pdf)
    print("wrote " + " and ".join(str(p) for p in paths.values()), file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    # The path, not read_audit(): the report needs the saved flag counts, which an
    # AuditResult rebuilt from JSON (holding only the worst flags) cannot recount.
    _write_reports(args.audit, args.out or Path(args.audit).parent, pdf=not args.no_pdf)
    return EXIT_PASS


def _add_gate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default=None, help="gate policy TOML (default: the bundled default policy)")
    p.add_argument("--strict", action="store_true", help="exit 1 on WARN as well as on FAIL")
    p.add_argument("--junit", default=None, metavar="PATH", help="also write the verdict as JUnit XML to PATH")


def _run_gate(audit_or_metrics: Any, policy: Any, args: argparse.Namespace, out_dir: str | Path):  # -> Verdict
    """Evaluate the policy; write ``verdict.json`` into ``out_dir`` (and JUnit XML if asked)."""
    from prefaudit.gate import apply_policy

    verdict = apply_policy(audit_or_metrics, policy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.junit:
        Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit).write_text(verdict.to_junit_xml(strict=args.strict), encoding="utf-8")
    return verdict


def _print_verdict(verdict: Any) -> None:
    counts = verdict.to_dict()["counts"]
    print(f"gate: {verdict.status.upper()} (policy {verdict.policy}: {counts['pass']} pass, {counts['warn']} warn, "
          f"{counts['fail']} fail, {counts['not_measured']} not measured)")
    for line in verdict.reasons:
        print("  " + line)


def cmd_gate(args: argparse.Namespace) -> int:
    from prefaudit.audit import read_audit
    from prefaudit.gate import load_policy

    policy = load_policy(args.policy)
    result = read_audit(args.audit)
    verdict = _run_gate(result, policy, args, args.out or Path(args.audit).parent)
    _print_verdict(verdict)
    return verdict.exit_code(args.strict)


def cmd_train(args: argparse.Namespace) -> int:
    from prefaudit.train import GateRefused, TrainConfig, train_dpo

    loaded = _load(args)
    analyzers = [a.strip() for a in args.analyzers.split(",") if a.strip()] if args.analyzers else None
    config = TrainConfig(loss=args.loss, beta=args.beta, learning_rate=args.learning_rate, max_steps=args.steps,
                         batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
                         backend=args.backend, precision=args.precision)
    label_noise = args.label_noise if args.label_noise in (None, "audit") else _rate(args.label_noise)
    drop = tuple(r.strip() for r in args.drop_flags.split(",") if r.strip()) if args.drop_flags else ()
    cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    try:
        run = train_dpo(loaded.table, args.model, args.output_dir, policy=args.policy, force=args.force,
                        strict=args.strict, config=config, label_noise=label_noise, drop_flags=drop,
                        length_balance=args.length_balance, margin_drop=_fractions(args.margin_drop),
                        ches_drop=args.ches_drop,
                        holdout=args.holdout, lora=args.lora,
                        analyzers=analyzers, audit_options={"coverage": cache} if cache else None,
                        cache_dir=args.cache_dir)
    except GateRefused as refused:
        _print_verdict(refused.verdict)
        print("prefaudit: training refused by the gate; no model was written (use --force to override, "
              "which is recorded)", file=sys.stderr)
        return EXIT_FAIL
    _print_verdict(run.verdict)
    if run.forced:
        print("prefaudit: training FORCED despite the gate (recorded in prefaudit_train.json)", file=sys.stderr)
    after = run.metadata["held_out_after"]
    tail = f", held-out reward accuracy {after['reward_accuracy']:.3f}" if after else ""
    print(f"trained {run.metadata['pairs']['trained']} pairs, final loss {run.metadata['final_train_loss']:.4f}"
          f"{tail}; saved to {run.output_dir}")
    return EXIT_PASS


def _fractions(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise PrefauditError(f"--margin-drop: expected LOW,HIGH fractions such as 0.1,0.05, got {text!r}") from None
    return low, high


def _rate(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PrefauditError(f"--label-noise: expected a number or 'audit', got {text!r}") from None


def _print_metrics(metrics: dict[str, float | None]) -> None:
    for key, value in metrics.items():
        shown = "not measured" if value is None else f"{value:.4g}"
        print(f"  {key:<48} {shown}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefaudit", description="Audit preference data before DPO.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="detected format, counts and the load report")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("audit", help="run the analyzers; write audit.json and pair_flags.csv")
    _add_data_args(p)
    p.add_argument("--out", default="prefaudit_out", help="output folder (default: prefaudit_out)")
    p.add_argument("--analyzers", default=None,
                   help="comma-separated subset of hygiene,agreement,coverage,length,margins "
                        "(default: all but margins; margins too when --reference-model is given)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random step (default 0)")
    p.add_argument("--tokenizer", default=None, help="length: a local tokenizer path or hub id for token counts")
    p.add_argument("--max-length", type=int, default=None, help="token budget per sequence (truncation share)")
    p.add_argument("--embedding-model", default=None, help="coverage: sentence-transformers model (path or id)")
    p.add_argument("--target", default=None, help="coverage: target prompts (any loader format or a .txt list)")
    p.add_argument("--reference-model", default=None,
                   help="margins: reference (SFT) model: local dir, hub id, .gguf file, or 'smollm2'")
    p.add_argument("--beta", type=float, default=None, help="margins: DPO beta (default 0.1)")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and log-probs")
    _add_gate_args(p)
    p.add_argument("--no-gate", action="store_true", help="skip the policy gate (exit 0 whatever the metrics)")
    p.add_argument("--no-pdf", action="store_true", help="write report.html only (no report.pdf)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("report", help="re-render report.html and report.pdf from a saved audit.json")
    p.add_argument("audit", help="an audit.json written by `prefaudit audit`")
    p.add_argument("--out", default=None, help="output folder (default: the audit's folder)")
    p.add_argument("--no-pdf", action="store_true", help="write report.html only (no report.pdf)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("gate", help="check a saved audit.json against a policy; write verdict.json")
    p.add_argument("audit", help="an audit.json written by `prefaudit audit`")
    _add_gate_args(p)
    p.add_argument("--out", default=None, help="folder for verdict.json (default: the audit's folder)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("train", help="audit, gate, then DPO-train a model; refuses on FAIL unless --force")
    _add_data_args(p)
    p.add_argument("--model", required=True, help="model to train (and reference): local dir, .gguf file or 'smollm2'")
    p.add_argument("--output-dir", required=True, help="where the model, prefaudit_train.json and run.log go")
    _add_gate_args(p)
    p.add_argument("--force", action="store_true", help="train even if the gate fails (recorded in the metadata)")
    p.add_argument("--analyzers", default=None, help="analyzers the gating audit runs (default as `audit`)")
    p.add_argument("--loss", default="sigmoid", choices=["sigmoid", "ipo", "robust", "cdpo", "length_reg", "cpo"],
                   help="sigmoid (DPO), ipo, robust (rDPO), cdpo, length_reg (R-DPO), cpo (default sigmoid)")
    p.add_argument("--label-noise", default=None,
                   help="flip rate for robust/cdpo: a number or 'audit' (agreement.flip_rate; the default)")
    p.add_argument("--drop-flags", default=None,
                   help="comma-separated flag reasons whose pairs are dropped, e.g. "
                        "contradictory_duplicate,empty_response; 'all' drops every flagged pair")
    p.add_argument("--length-balance", action="store_true", help="train on a length-balanced subsample")
    p.add_argument("--margin-drop", default=None, metavar="LOW,HIGH",
                   help="drop these fractions of pairs with the lowest / highest reference margins "
                        "(runs the margins analyzer with --model as the reference)")
    p.add_argument("--ches-drop", type=float, default=None, metavar="Q",
                   help="drop this fraction of pairs with the highest CHES, the likelihood-displacement "
                        "risk (runs the margins analyzer with --model as the reference)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
    p.add_argument("--learning-rate", type=float, default=5e-5, help="learning rate (default 5e-5)")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per prompt+response (default 512)")
    p.add_argument("--holdout", type=float, default=0.0, help="fraction of pairs held out for evaluation")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    p.add_argument("--backend", default="auto", choices=["auto", "trl", "own"],
                   help="auto: TRL's DPOTrainer for sigmoid/ipo/robust, our loop otherwise")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="training arithmetic, recorded in prefaudit_train.json (default fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed for the audit, the split and training")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and converted models")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("formats", help="list the input formats prefaudit reads")
    p.set_defaults(func=cmd_formats)
    return parser


def cmd_formats(args: argparse.Namespace) -> int:
    from prefaudit.loaders import FORMAT_NAMES, format_module

    for name in FORMAT_NAMES:
        doc = (format_module(name).__doc__ or "").strip().splitlines()
        print(f"{name:<16} {doc[0] if doc else ''}")
    return EXIT_PASS


def _version() -> str:
    from prefaudit import __version__

    return f"prefaudit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefaudit`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except PrefauditError as exc:
        print(f"prefaudit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # an output path that is a directory or a file, a permission problem
        print(f"prefaudit: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prefaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
