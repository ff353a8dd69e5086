"""Loader throughput and peak memory against ``pandas.read_json(lines=True)`` on the same file.

Generates a seeded TRL-standard JSONL file (prompt ~30 words, responses ~40-300 words), or
takes ``--file`` (e.g. the AlpacaFarm file of ``bench_scale.py``), then times
``prefaudit.loaders.load`` (every check on: field types, empty responses, unique pair ids,
canonical dtypes) and ``pandas.read_json(path, lines=True)``, each in a fresh subprocess so
that its peak RSS (``ru_maxrss``) is its own, interleaved ``--repeats`` times (the fastest
counts). Prints pairs/s and CPU seconds of each, the throughput ratio (prefaudit / pandas;
target >= 0.5), the CPU ratio (prefaudit / pandas), peak MiB of each against the pandas
frame's ``memory_usage(deep=True)``, and the CPU seconds of ``audit.table_hash`` (the
content digest every audit computes) on the loaded table.

    python benchmarks/bench_load.py            # 200,000 pairs
    python benchmarks/bench_load.py --quick    # 20,000 pairs
    python benchmarks/bench_load.py --file /work/bench/pairs_1000000_seed0.jsonl --repeats 1
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
from prefaudit.audit import table_hash
from prefaudit.loaders import load
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
frame = load(path).table if kind == "prefaudit" else pd.read_json(path, lines=True)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {"rows": len(frame), "seconds": dt, "cpu": cpu, "peak_kib": peak, "import_kib": base}
if kind == "prefaudit":
    c0 = time.process_time()
    table_hash(frame)
    out["hash_cpu"] = time.process_time() - c0
else:
    out["frame_kib"] = int(frame.memory_usage(deep=True).sum()) / 1024
print(json.dumps(out))
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
    parser.add_argument("--file", type=Path, default=None,
                        help="time this JSONL file instead of a generated one")
    parser.add_argument("--repeats", type=int, default=2, help="runs per loader; the fastest counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "pairs.jsonl"
            make_file(path, args.pairs or (20_000 if args.quick else 200_000))
        size_mib = path.stat().st_size / 2**20
        runs: dict[str, list[dict[str, float]]] = {"prefaudit": [], "pandas": []}
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            for kind in runs:
                runs[kind].append(measure(kind, path))
    best = {k: min(r, key=lambda x: x["cpu"]) for k, r in runs.items()}
    n = best["pandas"]["rows"]
    print(f"file: {path.name}, {n:,} records, {size_mib:.1f} MiB JSONL")
    if args.file is None:  # one judgement per generated record
        assert best["prefaudit"]["rows"] == n, best
    for kind, r in best.items():
        peak = max(x["peak_kib"] for x in runs[kind]) / 1024
        print(f"{kind:>10}: {n / r['seconds']:>10,.0f} records/s  ({r['seconds']:.2f} s wall, "
              f"{r['cpu']:.2f} s CPU)   peak RSS {peak:,.0f} MiB (after imports "
              f"{r['import_kib'] / 1024:,.0f} MiB)")
    frame_mib = best["pandas"]["frame_kib"] / 1024
    print(f"pandas frame memory_usage(deep=True): {frame_mib:,.0f} MiB")
    print(f"audit.table_hash of the loaded table: {best['prefaudit']['hash_cpu']:.2f} s CPU")
    ratio = best["pandas"]["seconds"] / best["prefaudit"]["seconds"]
    cpu = best["prefaudit"]["cpu"] / best["pandas"]["cpu"]
    mem = max(x["peak_kib"] for x in runs["prefaudit"]) / max(x["peak_kib"] for x in runs["pandas"])
    print(f"throughput ratio prefaudit/pandas: {ratio:.2f}x (target >= 0.5)")
    print(f"CPU ratio prefaudit/pandas: {cpu:.2f}x")
    print(f"peak memory ratio prefaudit/pandas: {mem:.2f}x (target <= 1.0)")
    print(f"prefaudit peak RSS / pandas frame: "
          f"{max(x['peak_kib'] for x in runs['prefaudit']) / 1024 / frame_mib:.2f}x")


if __name__ == "__main__":
    main()
