"""Loader throughput and peak memory against ``pandas.read_json(lines=True)`` on the same file.

Generates a seeded TRL-standard JSONL file (prompt ~30 words, responses ~40-300 words), then
times ``prefaudit.loaders.load`` (every check on: field types, empty responses, unique pair
ids, canonical dtypes) and ``pandas.read_json(path, lines=True)``, each in a fresh subprocess
so that its peak RSS (``ru_maxrss``) is its own. Prints pairs/s, the throughput ratio
(prefaudit / pandas; target >= 0.5) and peak MiB of each (target: prefaudit <= pandas).

    python benchmarks/bench_load.py            # 200,000 pairs
    python benchmarks/bench_load.py --quick    # 20,000 pairs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
kind, path = sys.argv[1], sys.argv[2]
import pandas as pd
from prefaudit.loaders import load
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if kind == "prefaudit":
    n = len(load(path).table)
else:
    n = len(pd.read_json(path, lines=True))
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": n, "seconds": dt, "peak_kib": peak, "import_kib": base}))
"""


VOCAB = np.array([
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "or", "at", "from", "an", "have", "not", "which", "but", "can", "all",
    "will", "one", "has", "more", "their", "model", "answer", "question", "data", "if", "about",
    "you", "would", "there", "time", "people", "what", "when", "make", "like", "use", "each",
    "should", "other", "some", "these", "than", "then", "into", "first", "also", "new", "because",
    "any", "most", "very", "through", "where", "much", "way", "before", "between", "however",
])


def make_file(path: Path, n_pairs: int, seed: int = 0) -> None:
    """Write ``n_pairs`` TRL-standard records with word-salad text of realistic lengths."""
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n_pairs):
            lens = (rng.integers(8, 60), *np.clip(rng.lognormal(4.5, 0.6, 2), 5, 600).astype(int))
            words = [" ".join(VOCAB[rng.integers(0, len(VOCAB), k)]) for k in lens]
            fh.write(json.dumps({"id": f"p{i}", "prompt": words[0].capitalize() + "?",
                                 "chosen": words[1].capitalize() + ".",
                                 "rejected": words[2].capitalize() + "."}) + "\n")


def measure(kind: str, path: Path) -> dict[str, float]:
    """Run one loader in a fresh interpreter; its time and peak RSS."""
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 pairs instead of 200,000")
    parser.add_argument("--pairs", type=int, default=None, help="number of pairs (overrides --quick)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per loader; the fastest counts")
    args = parser.parse_args(argv)
    n = args.pairs or (20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        make_file(path, n)
        size_mib = path.stat().st_size / 2**20
        runs: dict[str, list[dict[str, float]]] = {"prefaudit": [], "pandas": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            for kind in runs:
                runs[kind].append(measure(kind, path))
    print(f"file: {n:,} pairs, {size_mib:.1f} MiB JSONL")
    best = {k: min(r, key=lambda x: x["seconds"]) for k, r in runs.items()}
    for kind, r in best.items():
        assert r["rows"] == n, (kind, r["rows"])
        peak = max(x["peak_kib"] for x in runs[kind]) / 1024
        print(f"{kind:>10}: {n / r['seconds']:>10,.0f} pairs/s  ({r['seconds']:.2f} s)   "
              f"peak RSS {peak:,.0f} MiB (after imports {r['import_kib'] / 1024:,.0f} MiB)")
    ratio = best["pandas"]["seconds"] / best["prefaudit"]["seconds"]
    mem = max(x["peak_kib"] for x in runs["prefaudit"]) / max(x["peak_kib"] for x in runs["pandas"])
    print(f"throughput ratio prefaudit/pandas: {ratio:.2f}x (target >= 0.5)")
    print(f"peak memory ratio prefaudit/pandas: {mem:.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()
