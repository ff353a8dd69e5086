"""Overhead of the Ray engine: the embedding pass on Ray Data actors against the local engine.

The same N real texts (prompts and responses of ``sample_data/``, see ``bench_neighbors``)
are embedded with MiniLM three ways, each into an empty cache: the local engine (model
already loaded in this process), Ray with one actor, Ray with two actors. The Ray figures
include what a real run pays on top of the model work — building the dataset, starting the
actors, loading the model in each actor, moving texts and vectors, the driver's cache
writes — but not ``ray.init`` (once per session). Printed: texts/s of each and the ratio
Ray/local (target for one worker: >= 0.8x) and the largest difference from the local vectors.

    python benchmarks/bench_engine.py            # 4,000 texts
    python benchmarks/bench_engine.py --quick    # 500 texts
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_neighbors import real_texts  # noqa: E402

from prefaudit.scoring import embed as E  # noqa: E402
from prefaudit.scoring.engines import Engine  # noqa: E402


def timed_embed(texts: list[str], engine: Engine | None) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        out = E.embed(texts, cache_dir=cache, progress=False, engine=engine)
        return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 texts")
    ap.add_argument("--n", type=int, default=None, help="number of texts (default 4,000)")
    args = ap.parse_args()
    import ray

    n = args.n or (500 if args.quick else 4_000)
    base = real_texts()
    texts = [base[i % len(base)] + (f" ({i})" if i >= len(base) else "") for i in range(n)]
    E.load_model()  # the local engine with its model loaded, as in a long-running process
    local, t_local = timed_embed(texts, None)
    print(f"{n:,} real texts, MiniLM on CPU ({os.cpu_count()} cores)")
    print(f"  local engine:      {t_local:7.1f} s  {n / t_local:7.1f} texts/s")
    ray.init(num_cpus=max(os.cpu_count() or 1, 3), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        for workers in (1, 2):
            out, t = timed_embed(texts, Engine("ray", workers=workers))
            print(f"  ray, {workers} worker(s):  {t:7.1f} s  {n / t:7.1f} texts/s  ratio to local "
                  f"{t_local / t:5.2f}x{' (target >= 0.8x)' if workers == 1 else ''}  "
                  f"max |diff| {float(np.abs(out - local).max()):.1e}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
