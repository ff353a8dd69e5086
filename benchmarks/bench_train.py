"""Gated DPO training time and memory, against plain TRL DPOTrainer on the same pairs.

    python benchmarks/bench_train.py            # SmolLM2-135M (CPU), 16 LLMBar pairs, 4 steps
    python benchmarks/bench_train.py --quick    # the tiny random model (CI-sized)

The baseline is TRL's DPOTrainer alone (no audit, no gate, no metadata) on the same pairs,
steps and seed, measured in the same run; the ratio is prefaudit's ``train_dpo`` over it.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny random model instead of SmolLM2")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefaudit.loaders import load
    from prefaudit.train import TrainConfig, train_dpo
    from prefaudit.train.dpo import train_trl

    table = load(REPO / "sample_data" / "llmbar_natural.json").table
    size = table["prompt"].str.len() + table["chosen"].str.len() + table["rejected"].str.len()
    table = table.loc[size.sort_values(kind="mergesort").index[:args.pairs]].reset_index(drop=True)
    t0 = time.perf_counter()
    if args.quick:
        from prefaudit.testing import tiny_causal_lm

        model, tok = tiny_causal_lm(table["prompt"].tolist() + table["chosen"].tolist())
        model.requires_grad_(True)
        name = "tiny random Llama"
    else:
        from prefaudit.scoring.models import resolve_model_path

        where = resolve_model_path("smollm2")
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where)
        name = "SmolLM2-135M-Instruct (fp32, CPU)"
    load_s = time.perf_counter() - t0
    config = TrainConfig(loss="sigmoid", learning_rate=5e-5 if not args.quick else 1e-3, max_steps=args.steps,
                         batch_size=4, max_length=args.max_length, seed=0)
    pristine = copy.deepcopy(model)

    with tempfile.TemporaryDirectory() as tmp:
        # untimed 1-step warm-up: the first training run pays one-off costs (allocator, kernels, imports)
        warm = TrainConfig(**{**config.__dict__, "max_steps": 1})
        train_trl(copy.deepcopy(pristine), copy.deepcopy(pristine).eval(), tok, table, warm, tmp + "/warm")
        base_model, ref = copy.deepcopy(pristine), copy.deepcopy(pristine).eval()
        t = time.perf_counter()
        base_log = train_trl(base_model, ref, tok, table[["prompt", "chosen", "rejected"]], config,
                             tmp + "/trl")
        base_s = time.perf_counter() - t
        del base_model, ref

        t = time.perf_counter()
        run = train_dpo(table, model, tmp + "/gated", tokenizer=tok, config=config,
                        analyzers=["hygiene", "agreement", "length"], force=True)
        gated_s = time.perf_counter() - t

    losses = [round(e["loss"], 4) for e in run.log_history if "loss" in e]
    base_losses = [round(e["loss"], 4) for e in base_log if "loss" in e]
    print(f"model: {name}; {len(table)} pairs, {args.steps} steps, batch 4, max_length {args.max_length}, "
          f"{os.cpu_count()} CPUs")
    print(f"model load: {load_s:.1f} s")
    print(f"baseline TRL DPOTrainer alone: {base_s:.1f} s   losses {base_losses}")
    print(f"prefaudit train_dpo (audit + gate + train + save): {gated_s:.1f} s   losses {losses}")
    print(f"ratio gated / baseline: {gated_s / base_s:.2f}x   gate verdict: {run.verdict.status}")
    print(f"peak RSS: {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
