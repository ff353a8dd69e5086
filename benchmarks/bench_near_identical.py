"""Benchmark ``hygiene``'s near-identical check against a per-pair rapidfuzz loop.

Builds N pairs from the bundled HH-RLHF sample (real chosen and rejected answers, each suffixed
with its pair number), makes every 20th pair near-identical (rejected = chosen with two middle
characters swapped), and times in the same process:

- baseline: ``[Levenshtein.normalized_similarity(c, r) for c, r in pairs]``, the loop a user
  would write with the same library;
- :func:`prefaudit.analyzers.hygiene.near_identical_similarity` at the 0.9 cutoff (length-ratio
  pre-filter, then ``rapidfuzz.process.cpdist`` with ``score_cutoff`` on all cores).

Checks that both find exactly the same pairs at >= 0.9 (the planted ones and any real ones)
and prints pairs/s and the speed-up. ``--quick`` runs 20,000 pairs.

    python benchmarks/bench_near_identical.py [--pairs 1000000] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _timing import timed
from rapidfuzz.distance import Levenshtein

from prefaudit.analyzers.hygiene import near_identical_similarity
from prefaudit.loaders import load

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"
NEAR_EVERY = 20
THRESHOLD = 0.9


def garble_middle(text: str) -> str:
    """Two characters in the middle swapped: edit distance 2."""
    i = len(text) // 2
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


def make_pairs(n: int) -> tuple[list[str], list[str]]:
    base = load(SAMPLE).table
    idx = np.arange(n) % len(base)
    chosen = [f"{base['chosen'].iat[j]} #{i}" for i, j in enumerate(idx)]
    rejected = [f"{base['rejected'].iat[j]} #{i}" for i, j in enumerate(idx)]
    for i in planted_indices(n):
        rejected[i] = garble_middle(chosen[i])
    return chosen, rejected


def planted_indices(n: int) -> range:
    return range(0, n, NEAR_EVERY)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 pairs")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.pairs
    chosen, rejected = make_pairs(n)
    base, t_base = timed(lambda: np.array([Levenshtein.normalized_similarity(c, r)
                                           for c, r in zip(chosen, rejected, strict=True)]))
    ours, t_ours = timed(near_identical_similarity, chosen, rejected, THRESHOLD)
    hit_base, hit_ours = np.flatnonzero(base >= THRESHOLD), np.flatnonzero(ours >= THRESHOLD)
    assert np.array_equal(hit_base, hit_ours), "the vectorised check disagrees with the per-pair loop"
    planted = set(planted_indices(n))
    assert planted <= set(hit_ours.tolist()), "a planted near-identical pair was missed"
    np.testing.assert_allclose(ours[hit_ours], base[hit_ours], rtol=0, atol=1e-12)
    print(f"pairs: {n:,}; near-identical (>= {THRESHOLD}): {len(hit_ours):,} ({len(planted):,} planted)")
    print(f"per-pair loop:           {t_base:8.2f} s  {n / t_base:>12,.0f} pairs/s")
    print(f"near_identical_similarity {t_ours:7.2f} s  {n / t_ours:>12,.0f} pairs/s")
    print(f"speed-up: {t_base / t_ours:.1f}x")


if __name__ == "__main__":
    main()
