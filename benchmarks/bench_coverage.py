"""Benchmark of the coverage engine on CPU.

1. Embedding throughput: ``prefaudit.scoring.embed.embed`` (dedup, length sort, chunked
   cache writes) as a ratio to ``SentenceTransformer.encode`` on the same texts with the same
   model and batch size (target >= 0.9x).
2. Cached rerun: the same texts again with a cold in-process store (shards read back from
   disk), as a speed-up over the first run (target >= 20x).
3. Near-duplicate search (``pairs_above``, cosine >= 0.9) and nearest-neighbour search
   (``top_k``, k=1): time and peak traced memory at growing n. This part uses random unit
   vectors of dimension 384 with 1% planted near-copies instead of embedding that many texts
   (target at 50,000: under 60 s and under 2 GiB).

Texts are real prompts from sample_data/ and ../shared/data (LLMBar, PandaLM, HH-RLHF), each
repeated with a numbered suffix until there are N distinct texts (seeded order).

Usage: ``python benchmarks/bench_coverage.py [--quick] [--n N]`` (default N = 50,000;
``--quick``: 5,000 texts and search at 5k/10k/20k).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from prefaudit.scoring import embed as E  # noqa: E402
from prefaudit.similarity.neighbors import pairs_above, top_k  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def real_prompts() -> list[str]:
    """Unique real prompts from the bundled samples and, when present, the shared datasets."""
    out: list[str] = [r["input"]
                      for r in json.loads((REPO / "sample_data" / "llmbar_natural.json").read_text())]
    for f in sorted((SHARED / "llmbar" / "Dataset").glob("**/dataset.json")):
        out += [r["input"] for r in json.loads(f.read_text())]
    pandalm = SHARED / "pandalm" / "testset-v1.json"
    if pandalm.is_file():
        out += [r["instruction"] + ("\n" + r["input"] if r["input"] else "")
                for r in json.loads(pandalm.read_text())]
    hh = SHARED / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    if hh.is_file():
        with gzip.open(hh, "rt", encoding="utf-8") as f:
            out += [json.loads(line)["chosen"].split("\n\nAssistant:")[0].replace("\n\nHuman: ", "")
                    for line in f]
    return list(dict.fromkeys(p[:600] for p in out if p.strip()))


def make_texts(n: int, seed: int = 0) -> list[str]:
    base = real_prompts()
    order = np.random.default_rng(seed).permutation(len(base))
    return [base[order[i % len(base)]] + (f" ({i})" if i >= len(base) else "") for i in range(n)]


def bench_embedding(n: int) -> None:
    texts = make_texts(n)
    print(f"embedding {len(texts):,} distinct real-prompt texts on {E.default_device()} "
          f"(torch threads: {__import__('torch').get_num_threads()})")
    model = E.load_model()
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm-up
    t = time.perf_counter()
    direct = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    t_direct = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        ours = E.embed(texts, cache_dir=cache, batch_size=64, progress=False)
        t_ours = time.perf_counter() - t
        E._STORES.clear()  # as in a new process: read the shards back from disk
        before = E.texts_encoded()
        t = time.perf_counter()
        again = E.embed(texts, cache_dir=cache, progress=False)
        t_cached = time.perf_counter() - t
        sent = E.texts_encoded() - before
    assert np.array_equal(ours, again)
    diff = float(np.abs(direct - ours).max())
    print(f"  SentenceTransformer.encode: {t_direct:8.2f} s  ({len(texts) / t_direct:7.1f} texts/s)")
    print(f"  prefaudit embed (cold):     {t_ours:8.2f} s  ({len(texts) / t_ours:7.1f} texts/s)  "
          f"throughput ratio {t_direct / t_ours:.2f}x (target >= 0.9x); max |diff| {diff:.1e}")
    print(f"  prefaudit embed (cached):   {t_cached:8.2f} s  speed-up {t_ours / t_cached:.0f}x "
          f"(target >= 20x); texts sent to the model: {sent}")


def bench_search(sizes: list[int], dim: int = 384, seed: int = 0) -> None:
    print(f"near-duplicate / nearest-neighbour search on RANDOM unit vectors (dim {dim}, 1% planted "
          "near-copies), not embedded texts")
    for n in sizes:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, dim)).astype(np.float32)
        copies = rng.choice(n, size=n // 100, replace=False)
        x[copies] = x[(copies + 1) % n] + 0.05 * rng.normal(size=(len(copies), dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        tracemalloc.start()
        t = time.perf_counter()
        i, _, _ = pairs_above(x, 0.9)
        t_dup = time.perf_counter() - t
        _, peak_dup = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        t = time.perf_counter()
        top_k(x[: n // 5], x, 1)
        t_nn = time.perf_counter() - t
        _, peak_nn = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        dense = n * n * 4 / 2**30
        print(f"  n={n:>6,}: pairs_above {t_dup:6.2f} s, peak {peak_dup / 2**20:6.0f} MiB, "
              f"{len(i):,} pairs found | "
              f"top_k({n // 5:,} queries) {t_nn:5.2f} s, peak {peak_nn / 2**20:5.0f} MiB | "
              f"a dense n x n matrix would be {dense:.1f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI size: 5,000 texts, search at 5k/10k/20k")
    ap.add_argument("--n", type=int, default=None, help="number of texts to embed (default 50,000)")
    args = ap.parse_args()
    n = args.n or (5_000 if args.quick else 50_000)
    bench_embedding(n)
    bench_search([5_000, 10_000, 20_000] if args.quick else [10_000, 20_000, 50_000])


if __name__ == "__main__":
    main()
