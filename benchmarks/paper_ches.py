"""Paper check: do high-CHES pairs lower the chosen log-probability more under DPO?

Razin et al. 2024 ("Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization", arXiv 2410.08847) find that DPO on pairs with a high CHES score lowers the
probability of the chosen responses more (likelihood displacement) than on low-CHES pairs.
This script repeats the comparison at the scale a CPU allows:

1. score real HH-RLHF pairs from ``sample_data/`` (``--quick``: the 136 shortest, so that a
   loaded 2-core CPU finishes in minutes) with SmolLM2-135M-Instruct as the reference
   (:func:`prefaudit.scoring.logprobs.score_pairs`, TRL's encoding, ``--max-length`` tokens),
   keeping pairs whose responses are not truncated away;
2. rank them by CHES (``--normalized``: the length-normalised CHES) and take the top and the
   bottom quartile (equal sizes, at least 32 pairs each);
3. train the same DPO on each quartile from the same starting model: sigmoid loss, the
   package's default beta and learning rate, ``--epochs`` passes (``--quick``: one) at
   ``--batch-size`` pairs per step, seed 0 (the bundled own loop,
   :func:`prefaudit.train.dpo.train_own`, which computes TRL's loss on TRL's encoding);
4. score the trained model on its own training pairs and print, per quartile, the mean change
   per token of the chosen log-prob (policy - reference), of the rejected log-prob, and the
   share of pairs whose chosen log-prob fell.

Nothing here is tuned to make the effect appear; the numbers are printed as they come.

    python benchmarks/paper_ches.py --quick     # 136 shortest pairs -> >= 32 per quartile, 1 epoch
    python benchmarks/paper_ches.py             # 300 pairs (all of the sample)
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prefaudit.env import default_cache_dir  # noqa: E402
from prefaudit.loaders import load  # noqa: E402
from prefaudit.schema import to_pairs  # noqa: E402
from prefaudit.scoring.logprobs import score_pairs  # noqa: E402
from prefaudit.scoring.models import load_reference  # noqa: E402
from prefaudit.train.dpo import TrainConfig, train_own  # noqa: E402

SAMPLE = REPO / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the 136 shortest pairs (>= 32 per quartile), one epoch")
    ap.add_argument("--pairs", type=int, default=None, help="pairs to rank (default 300, --quick 136)")
    ap.add_argument("--model", default="smollm2", help="reference model spec (default smollm2)")
    ap.add_argument("--max-length", type=int, default=256, help="tokens per prompt+response (default 256)")
    ap.add_argument("--epochs", type=float, default=None,
                    help="passes over each quartile (default 2, --quick 1)")
    ap.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    ap.add_argument("--normalized", action="store_true", help="rank by the length-normalised CHES")
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(0)
    n = args.pairs or (136 if args.quick else 300)
    pairs = to_pairs(load(SAMPLE).table)
    pairs = pairs[~pairs["tie"]]
    if args.quick:
        size = pairs["prompt"].str.len() + pairs["chosen"].str.len() + pairs["rejected"].str.len()
        pairs = pairs.loc[size.sort_values(kind="mergesort").index]
    pairs = pairs.head(n).reset_index(drop=True)
    epochs = args.epochs or (1.0 if args.quick else 2.0)
    ref, tok = load_reference(args.model)
    t0 = time.perf_counter()
    before = score_pairs(pairs, ref, tok, max_length=args.max_length, progress=False,
                         cache_dir=default_cache_dir())
    t_score = time.perf_counter() - t0
    usable = (before["chosen_tokens"] > 1) & (before["rejected_tokens"] > 1)
    key = "ches_normalized" if args.normalized else "ches"
    ranked = before.loc[usable, key].sort_values(kind="mergesort").index
    q = len(ranked) // 4
    if q < 32:
        raise SystemExit(f"only {len(ranked)} usable pairs: need at least 128 for 32 per quartile")
    groups = {"bottom CHES quartile": ranked[:q], "top CHES quartile": ranked[-q:]}
    defaults = TrainConfig()
    config = TrainConfig(loss="sigmoid", beta=defaults.beta, learning_rate=defaults.learning_rate,
                         max_steps=math.ceil(epochs * q / args.batch_size), batch_size=args.batch_size,
                         max_length=args.max_length, seed=0, backend="own")
    print(f"model {args.model}, {len(pairs)} {'shortest ' if args.quick else ''}HH-RLHF pairs "
          f"from {SAMPLE.name}, "
          f"{int(usable.sum())} usable at "
          f"max_length {args.max_length} (scored in {t_score:.0f} s); ranked by {key}")
    print(f"DPO (sigmoid, beta {config.beta}, lr {config.learning_rate:g}, {config.max_steps} steps of "
          f"{config.batch_size} pairs, seed {config.seed}) on {q} pairs per quartile, from the same start\n")
    rows = []
    for name, idx in groups.items():
        train = pairs.loc[idx].reset_index(drop=True)
        policy = copy.deepcopy(ref)
        policy.requires_grad_(True)
        t0 = time.perf_counter()
        train_own(policy, ref, tok, train, config)
        policy.eval()
        after = score_pairs(train, policy, tok, max_length=args.max_length, progress=False)
        ref_s = before.loc[idx].reset_index(drop=True)
        d_chosen = (after["chosen_logp"] - ref_s["chosen_logp"]) / ref_s["chosen_tokens"]
        d_rejected = (after["rejected_logp"] - ref_s["rejected_logp"]) / ref_s["rejected_tokens"]
        margin_up = ((after["chosen_logp"] - ref_s["chosen_logp"])
                     - (after["rejected_logp"] - ref_s["rejected_logp"]))
        rows.append((name, q, float(ref_s["ches"].mean()), float(ref_s["ches_normalized"].mean()),
                     float(d_chosen.mean()), float(d_rejected.mean()), float((d_chosen < 0).mean()),
                     float((margin_up > 0).mean()), time.perf_counter() - t0))
        del policy
    head = (f"| {'pairs trained on':<20} | {'n':>3} | {'mean CHES':>10} | {'mean CHES/len':>13} | "
            f"{'Δ chosen logp/token':>19} | {'Δ rejected logp/token':>21} | {'chosen fell':>11} | "
            f"{'reward acc':>10} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, k, ches, ches_n, dc, dr, fell, acc, _ in rows:
        print(f"| {name:<20} | {k:>3} | {ches:>10.1f} | {ches_n:>13.3f} | {dc:>+19.4f} | {dr:>+21.4f} | "
              f"{fell:>11.0%} | {acc:>10.0%} |")
    print(f"\nΔ chosen per token, top minus bottom quartile: {rows[1][4] - rows[0][4]:+.4f} nats "
          f"(the paper's effect: negative); training took {rows[0][-1]:.0f} s and {rows[1][-1]:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
