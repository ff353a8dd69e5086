"""Command line: ``prefaudit inspect | audit | export ...``.

Exit codes: 0 pass, 1 the gate failed, 2 bad input or usage (one or two lines on stderr,
never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefaudit.env import arrow_system_allocator
from prefaudit.errors import PrefauditError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: The largest seed numpy's and torch's generators accept.
MAX_SEED = 2**32 - 1


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (exit 2), without the usage text."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: an integer in [0, :data:`MAX_SEED`]."""
    value = _int_arg(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, {MAX_SEED}], got {value}")
    return value


def positive_int_arg(text: str) -> int:
    """argparse type of a count or size: an integer of at least 1."""
    value = _int_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def fraction_arg(text: str) -> float:
    """argparse type of a share of pairs: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text[:40]!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {value}")
    return value


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None


def analyzers_arg(text: str) -> list[str]:
    """argparse type of ``--analyzers``: a comma-separated list of known analyzer names."""
    from prefaudit.audit import ANALYZERS

    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected analyzer names from {', '.join(ANALYZERS)}, got {text!r}")
    unknown = [n for n in names if n not in ANALYZERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown analyzer {unknown[0]!r}; known: {', '.join(ANALYZERS)}")
    return names


def _add_data_args(p: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    p.add_argument("data", nargs="+",
                   help="data file(s) or folder(s): .jsonl/.json/.csv/.parquet, .gz ok; "
                        "a datasets save_to_disk folder, an .arrow file, or hf:ORG/NAME[:CONFIG] "
                        "from the local Hugging Face cache")
    p.add_argument(format_flag, dest="format", default="auto",
                   help="input format (default: detect); see `prefaudit formats`")
    p.add_argument("--pairs", choices=["best_worst", "all"], default=None,
                   help="UltraFeedback: best-vs-worst completion (default) or all pairs")
    p.add_argument("--responses", default=None,
                   help="generic long table: the responses file (pair_id, prompt, response_a, response_b)")
    p.add_argument("--columns", default=None, metavar="MAP",
                   help="column map for any schema: 'prompt=F,chosen=F,rejected=F' or "
                        "'prompt=F,response_a=F,response_b=F,label=F' (+ annotator=, strength=, id=); "
                        "see `prefaudit formats`")
    p.add_argument("--label-values", default=None, metavar="MAP",
                   help="with label= in --columns: what each label value means, e.g. '0=a,1=b,2=tie'")
    p.add_argument("--split", default=None, help="Hugging Face data: the split to read (e.g. train, test)")


def _load(args: argparse.Namespace):  # -> Loaded
    from prefaudit.loaders import load

    options = {k: v for k, v in (("pairs", args.pairs), ("responses", args.responses)) if v is not None}
    data = args.data[0] if len(args.data) == 1 else args.data
    return load(data, format=args.format, columns=args.columns, label_values=args.label_values,
                split=args.split, **options)


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
    print(f"prompts:     {info['n_unique_prompts']} unique"
          + (", conversational" if info["conversational"] else ""))
    lines = report.summary_lines()
    print("load report: " + ("nothing dropped, repaired or coerced" if not lines else ""))
    for line in lines:
        print("  " + line)
    return EXIT_PASS


def _analyzer_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    opts: dict[str, dict[str, Any]] = {
        "length": {k: v for k, v in (("tokenizer", args.tokenizer), ("max_length", args.max_length))
                   if v is not None},
        "coverage": {**cache, **{k: v for k, v in (("embedding_model", args.embedding_model),)
                                 if v is not None}},
        "margins": {**cache, **{k: v for k, v in (("reference_model", args.reference_model),
                                                    ("beta", args.beta),
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
    result = audit(loaded.table, args.analyzers, load_report=loaded.report, seed=args.seed,
                   options=_analyzer_options(args),
                   config={"data": [str(p) for p in args.data], "format": args.format},
                   engine=_engine(args))
    return _gate_and_publish(result, policy, args,
                             lambda: "{audit} and {pair_flags}".format_map(result.write(args.out)))


def _engine(args: argparse.Namespace):  # -> Engine | None
    """The engine the CLI flags ask for (checked before any work: Ray must be importable)."""
    from prefaudit.scoring.engines import Engine, require_ray

    if args.engine == "local":
        return None
    require_ray()
    return Engine("ray", address=args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker)


def _gate_and_publish(result: Any, policy: Any, args: argparse.Namespace, save: Callable[[], str]) -> int:
    """What ``audit`` and ``evaluate`` do with a result: gate it (unless ``--no-gate``), save it
    (``save`` returns what it wrote), render the reports, print the metrics and the verdict;
    returns the exit code."""
    verdict = None if policy is None else _run_gate(result, policy, args, args.out)
    if verdict is not None:
        result.verdict = verdict.to_dict()
    print(f"wrote {save()}", file=sys.stderr)
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
    p.add_argument("--junit", default=None, metavar="PATH",
                   help="also write the verdict as JUnit XML to PATH")


def _run_gate(audit_or_metrics: Any, policy: Any, args: argparse.Namespace,
              out_dir: str | Path):  # -> Verdict
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
    print(f"gate: {verdict.status.upper()} (policy {verdict.policy}: {counts['pass']} pass, "
          f"{counts['warn']} warn, {counts['fail']} fail, {counts['not_measured']} not measured)")
    for line in verdict.reasons:
        print("  " + line)


def cmd_gate(args: argparse.Namespace) -> int:
    from prefaudit.audit import read_audit
    from prefaudit.gate import load_policy

    result = read_audit(args.audit)
    if result.metrics and all(k.startswith("posttrain.") for k in result.metrics):  # an evaluation.json
        from prefaudit.posttrain import posttrain_policy

        policy = posttrain_policy(args.policy)
    else:
        policy = load_policy(args.policy)
    verdict = _run_gate(result, policy, args, args.out or Path(args.audit).parent)
    _print_verdict(verdict)
    return verdict.exit_code(args.strict)


def cmd_train(args: argparse.Namespace) -> int:
    config = _train_config(args)
    from prefaudit.train import GateRefused, train_dpo

    loaded = _load(args)
    analyzers = [a.strip() for a in args.analyzers.split(",") if a.strip()] if args.analyzers else None
    label_noise = args.label_noise if args.label_noise in (None, "audit") else _rate(args.label_noise)
    drop = _flag_list(args.drop_flags)
    cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    saved = _saved_audit(args, loaded.table, drop, "train")
    try:
        run = train_dpo(loaded.table, args.model, args.output_dir, policy=args.policy, force=args.force,
                        strict=args.strict, config=config, label_noise=label_noise, drop_flags=drop,
                        length_balance=args.length_balance, margin_drop=_fractions(args.margin_drop),
                        ches_drop=args.ches_drop,
                        holdout=args.holdout, lora=args.lora,
                        analyzers=analyzers, audit_options={"coverage": cache} if cache else None,
                        audit_result=saved,
                        cache_dir=args.cache_dir, target=_target_prompts(args.target))
    except GateRefused as refused:
        _print_verdict(refused.verdict)
        print("prefaudit: training refused by the gate; no model was written (use --force to override, "
              "which is recorded)", file=sys.stderr)
        return EXIT_FAIL
    _print_verdict(run.verdict)
    if run.forced:
        print("prefaudit: training FORCED despite the gate (recorded in prefaudit_train.json)",
              file=sys.stderr)
    after = run.metadata["held_out_after"]
    tail = f", held-out reward accuracy {after['reward_accuracy']:.3f}" if after else ""
    if run.metadata["evaluation"]:
        tail += (f"; post-training gate {run.metadata['evaluation']['verdict']['status'].upper()} "
                 f"(evaluation/)")
    print(f"trained {run.metadata['pairs']['trained']} pairs, "
          f"final loss {run.metadata['final_train_loss']:.4f}"
          f"{tail}; saved to {run.output_dir}")
    return EXIT_PASS


def _saved_audit(args: argparse.Namespace, table: Any, drop: tuple[str, ...], command: str) -> Any:
    """The audit ``--from-audit DIR`` names, checked to be of ``table`` (None without the option)."""
    if not args.from_audit:
        return None
    if args.analyzers:
        raise PrefauditError(f"--analyzers applies when {command} audits the data; not with --from-audit")
    from prefaudit.audit import read_audit
    from prefaudit.selection import check_audit

    result = read_audit(args.from_audit)
    check_audit(result, table, drop, where=str(Path(args.from_audit) / "audit.json"))
    return result


def _add_selection_args(p: argparse.ArgumentParser, reference: str) -> None:
    """The options of :func:`prefaudit.selection.select_pairs`, shared by ``train`` and ``export``;
    ``reference`` says where the margins they need come from."""
    p.add_argument("--drop-flags", default=None,
                   help="comma-separated flag reasons whose pairs are dropped, e.g. "
                        "contradictory_duplicate,empty_response; 'all' drops every flagged pair")
    p.add_argument("--length-balance", action="store_true", help="keep a seeded length-balanced subsample")
    p.add_argument("--margin-drop", default=None, metavar="LOW,HIGH",
                   help="drop these fractions of pairs with the lowest / highest reference margins "
                        f"({reference})")
    p.add_argument("--ches-drop", type=fraction_arg, default=None, metavar="Q",
                   help="drop this fraction of pairs with the highest CHES, the likelihood-displacement risk "
                        f"({reference})")


def _add_from_audit_arg(p: argparse.ArgumentParser) -> None:
    """``--from-audit DIR``, shared by ``train`` and ``export`` (see :func:`_saved_audit`)."""
    p.add_argument("--from-audit", default=None, metavar="DIR",
                   help="use a saved audit (DIR/audit.json + pair_flags.csv) instead of auditing again; "
                        "refused when it audited other data")


def _flag_list(text: str | None) -> tuple[str, ...]:
    """``--drop-flags R1,R2`` as a tuple of flag reasons (empty when not given)."""
    return tuple(r.strip() for r in text.split(",") if r.strip()) if text else ()


def cmd_export(args: argparse.Namespace) -> int:
    from prefaudit.audit import audit
    from prefaudit.export import export_pairs, output_path, write_export
    from prefaudit.gate import apply_policy, load_policy

    output_path(args.out, args.export_format)  # a wrong suffix fails before the work
    policy = load_policy(args.policy)
    loaded = _load(args)
    cache = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    margins = {**cache, "reference_model": args.reference_model} if args.reference_model else None
    result = _saved_audit(args, loaded.table, _flag_list(args.drop_flags), "export")
    if result is not None:
        if margins is not None:  # log-probs come from the cache when the audit scored them
            from prefaudit.analyzers.margins import analyze_margins

            scored = analyze_margins(loaded.table, **margins)
            result.results.setdefault("margins", scored).pair_data = scored.pair_data
    else:
        analyzers = [a.strip() for a in args.analyzers.split(",") if a.strip()] if args.analyzers else None
        if analyzers is not None and margins is not None and "margins" not in analyzers:
            analyzers.append("margins")
        result = audit(loaded.table, analyzers, load_report=loaded.report, seed=args.seed,
                       options={"margins": margins} if margins else None)
    if result.verdict is None:
        result.verdict = apply_policy(result, policy).to_dict()
    drop = _flag_list(args.drop_flags)
    frame = export_pairs(loaded.table, result, drop_flags=drop, length_balance=args.length_balance,
                         margin_drop=_fractions(args.margin_drop), ches_drop=args.ches_drop, seed=args.seed,
                         format=args.export_format)
    options = {"data": [str(p) for p in args.data], "from_audit": args.from_audit, "drop_flags": list(drop),
               "length_balance": args.length_balance, "margin_drop": args.margin_drop,
               "ches_drop": args.ches_drop,
               "reference_model": args.reference_model, "seed": args.seed}
    paths = write_export(frame, args.out, result, format=args.export_format, options=options)
    dropped = ", ".join(f"{k} {v}" for k, v in frame.attrs["dropped"].items())
    print(f"exported {len(frame)} pairs to {paths['data']} (dropped: {dropped}); "
          f"verdict of the audited data: {result.verdict['status'].upper()}; sidecar {paths['sidecar']}")
    return EXIT_PASS


def cmd_evaluate(args: argparse.Namespace) -> int:
    from prefaudit.posttrain import (
        evaluate_model,
        load_policy_and_reference,
        posttrain_policy,
        write_evaluation,
    )

    policy = None if args.no_gate else posttrain_policy(args.policy)  # a bad policy fails before the work
    loaded = _load(args)
    target = _target_prompts(args.target)
    model, reference, tok = load_policy_and_reference(args.policy_model, args.reference_model,
                                                      cache_dir=args.cache_dir)
    clusters = None
    if not args.no_clusters:
        from prefaudit.posttrain.clusters import pair_clusters

        clusters = pair_clusters(loaded.table.drop_duplicates("pair_id"),
                                 embedding_model=args.embedding_model, cache_dir=args.cache_dir,
                                 seed=args.seed)
    result = evaluate_model(loaded.table, model, reference, tok, target=target, max_length=args.max_length,
                            max_new_tokens=args.max_new_tokens, seed=args.seed, cache_dir=args.cache_dir,
                            clusters=clusters, chat=not args.plain_prompts, load_report=loaded.report,
                            config={"data": [str(p) for p in args.data], "policy_model": args.policy_model,
                                    "reference_model": args.reference_model, "target": args.target})
    return _gate_and_publish(result, policy, args, lambda: str(write_evaluation(result, args.out)))


def _target_prompts(path: str | None) -> list[str] | None:
    from prefaudit.loaders.prompts import load_prompts

    return None if path is None else load_prompts(path)


def _fractions(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise PrefauditError(f"--margin-drop: expected LOW,HIGH fractions such as 0.1,0.05, "
                             f"got {text!r}") from None
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


def _add_train_config_args(p: argparse.ArgumentParser) -> None:
    """One option per :class:`~prefaudit.train.config.TrainConfig` field, with its default and help."""
    from prefaudit.train.config import cli_fields

    for name, flag, default, help_text, choices in cli_fields():
        metavar = None if choices else flag.lstrip("-").upper().replace("-", "_")
        p.add_argument(flag, dest=name, type=type(default), default=default, choices=choices, metavar=metavar,
                       help=help_text)


def _train_config(args: argparse.Namespace):  # -> TrainConfig
    """The TrainConfig the options describe; ConfigError (exit 2) for a bad value, before anything loads."""
    from prefaudit.train.config import TrainConfig, check_options_apply, cli_fields

    config = TrainConfig(**{name: getattr(args, name) for name, *_ in cli_fields()})
    check_options_apply(config)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prefaudit", description="Audit preference data before DPO.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="detected format, counts and the load report")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("audit", help="run the analyzers; write audit.json and pair_flags.csv")
    _add_data_args(p)
    p.add_argument("--out", default="prefaudit_out", help="output folder (default: prefaudit_out)")
    p.add_argument("--analyzers", type=analyzers_arg, default=None,
                   help="comma-separated subset of hygiene,agreement,judges,coverage,length,margins "
                        "(default: all but margins; margins too when --reference-model is given; judges "
                        "only when the data names annotators or records the order shown); hygiene always "
                        "runs (it is cheap, and the default policy requires it)")
    p.add_argument("--seed", type=seed_arg, default=0,
                   help=f"seed for every random step, 0..{MAX_SEED} (default 0)")
    p.add_argument("--tokenizer", default=None,
                   help="length: a local tokenizer path or hub id for token counts")
    p.add_argument("--max-length", type=positive_int_arg, default=None,
                   help="token budget per sequence (truncation share)")
    p.add_argument("--embedding-model", default=None,
                   help="coverage: sentence-transformers model (path or id)")
    p.add_argument("--target", default=None,
                   help="coverage: target prompts (any loader format or a .txt list)")
    p.add_argument("--reference-model", default=None,
                   help="margins: reference (SFT) model: local dir, hub id, .gguf file, or 'smollm2'")
    p.add_argument("--beta", type=float, default=None, help="margins: DPO beta (default 0.1)")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and log-probs")
    _add_gate_args(p)
    p.add_argument("--no-gate", action="store_true",
                   help="skip the policy gate (exit 0 whatever the metrics)")
    p.add_argument("--no-pdf", action="store_true", help="write report.html only (no report.pdf)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the embedding and log-prob passes run "
                        "(default local; ray: pip install 'prefaudit[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="ray: cluster address (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=1,
                   help="ray: actors, each loading the model once (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (default 0: CPU)")
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
    p.add_argument("--model", required=True,
                   help="model to train (and reference): local dir, .gguf file or 'smollm2'")
    p.add_argument("--output-dir", required=True, help="where the model, prefaudit_train.json and run.log go")
    _add_gate_args(p)
    p.add_argument("--force", action="store_true",
                   help="train even if the gate fails (recorded in the metadata)")
    p.add_argument("--analyzers", default=None, help="analyzers the gating audit runs (default as `audit`)")
    _add_from_audit_arg(p)
    p.add_argument("--label-noise", default=None,
                   help="flip rate for robust/cdpo: a number or 'audit' (agreement.flip_rate; the default)")
    _add_selection_args(p, "runs the margins analyzer with --model as the reference")
    p.add_argument("--holdout", type=float, default=0.0, help="fraction of pairs held out for evaluation")
    p.add_argument("--target", default=None,
                   help="target prompts: after training, `evaluate` generates on them "
                        "(any loader format or .txt)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and converted models")
    _add_train_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write the pairs training would use as a TRL-ready dataset "
                                      "(+ sidecar JSON)")
    _add_data_args(p, format_flag="--input-format")
    p.add_argument("--out", required=True, help="output file: .parquet (trl, trl-conversational) or .jsonl")
    p.add_argument("--format", dest="export_format", default="trl",
                   choices=["trl", "trl-conversational", "jsonl"],
                   help="trl (default): prompt/chosen/rejected, message lists kept for conversational data; "
                        "trl-conversational: always message lists; jsonl: the trl columns as JSON lines")
    _add_from_audit_arg(p)
    _add_selection_args(p, "needs --reference-model")
    p.add_argument("--analyzers", default=None, help="analyzers the audit runs (default as `audit`)")
    p.add_argument("--reference-model", default=None,
                   help="margins: reference model; its log-probs are exported as "
                        "ref_chosen_logps/ref_rejected_logps")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and log-probs")
    p.add_argument("--policy", default=None,
                   help="policy whose verdict the sidecar records (default: bundled)")
    p.add_argument("--seed", type=int, default=0, help="seed for the audit and the length balance")
    p.set_defaults(func=cmd_export)


    p = sub.add_parser("evaluate", help="the trained policy against its reference: displacement, drift; "
                                        "writes evaluation.json")
    _add_data_args(p)
    p.add_argument("--policy-model", required=True,
                   help="the trained model: a model folder, a LoRA adapter folder, "
                        "or what `prefaudit train` wrote")
    p.add_argument("--reference-model", default=None,
                   help="its reference: local dir, .gguf file or 'smollm2' "
                        "(default: the model prefaudit_train.json in the policy folder names)")
    p.add_argument("--target", default=None,
                   help="target prompts to generate on (any loader format or a .txt list)")
    p.add_argument("--out", default="prefaudit_eval", help="output folder (default: prefaudit_eval)")
    p.add_argument("--max-length", type=int, default=None,
                   help="token budget per prompt + response when scoring")
    p.add_argument("--max-new-tokens", type=int, default=64,
                   help="tokens generated per target prompt (default 64)")
    p.add_argument("--plain-prompts", action="store_true",
                   help="give target prompts as plain text "
                        "(default: one chat turn when the tokenizer has a template)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the clusters and the policy's samples (default 0)")
    p.add_argument("--embedding-model", default=None,
                   help="sentence-transformers model for the prompt clusters")
    p.add_argument("--no-clusters", action="store_true", help="skip the by-prompt-cluster table")
    p.add_argument("--cache-dir", default=None, help="cache for embeddings and log-probs")
    _add_gate_args(p)
    p.add_argument("--no-gate", action="store_true",
                   help="skip the policy gate (exit 0 whatever the metrics)")
    p.add_argument("--no-pdf", action="store_true", help="write report.html only (no report.pdf)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("formats", help="list the input formats prefaudit reads")
    p.set_defaults(func=cmd_formats)
    return parser


def cmd_formats(args: argparse.Namespace) -> int:
    from prefaudit.loaders import FORMAT_NAMES, format_module

    for name in FORMAT_NAMES:
        doc = (format_module(name).__doc__ or "").strip().splitlines()
        print(f"{name:<16} {doc[0] if doc else ''}")
    from prefaudit.loaders import column_map

    print(f"\n--columns: {column_map.__doc__}")
    return EXIT_PASS


def _version() -> str:
    from prefaudit import __version__

    return f"prefaudit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefaudit`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    arrow_system_allocator()
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
