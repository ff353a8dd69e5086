"""FAISS neighbour search against the hand-written blocked search it replaced.

Vectors: MiniLM embeddings of the real texts in ``sample_data/`` (prompts and responses of
PandaLM, HH-RLHF, LLMBar, LLaMA-Factory, cut to 300 characters; cached on disk, so a rerun
embeds nothing), resampled to N vectors: each a real vector plus Gaussian noise of norm 0.5,
renormalised, and 1% planted near-copies of another vector (noise norm 0.005). The task is
the near-duplicate search of ``coverage``: all pairs with cosine >= 0.9, at most 20 partners
per row.

For each size and method, a fresh subprocess builds the vectors (seeded) and runs the search;
printed: seconds, peak RSS of the process (FAISS allocates outside Python, so tracemalloc
would miss it), pairs found, planted copies found, and for FAISS the method (exact / IVF with
its cells, nprobe and the recall of the exact top-k measured on its calibration sample). At
the sizes where both run, the two pair sets are compared (same pairs; IVF's share of the exact
ones). The blocked search is kept here only, as the baseline.

    python benchmarks/bench_neighbors.py                 # 50k both, 200k both, 1M FAISS
    python benchmarks/bench_neighbors.py --quick         # 20k both, 50k FAISS (exact and IVF)
    python benchmarks/bench_neighbors.py --save-base base.npy   # then, on a machine without the model:
    python benchmarks/bench_neighbors.py --base base.npy --plan "200000:blocked,faiss,ivf;1000000:ivf"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
THRESHOLD = 0.9
BLOCK_BYTES = 64 * 2**20


def real_texts() -> list[str]:
    """Distinct real prompts and responses of ``sample_data/``, cut to 300 characters."""
    from prefaudit.loaders import load

    texts: list[str] = []
    for name in ("pandalm_testset_v1.json", "hh_rlhf_harmless_test_300.jsonl", "llmbar_natural.json",
                 "llama_factory_dpo_en_100.json"):
        table = load(REPO / "sample_data" / name).table
        for col in ("prompt", "chosen", "rejected"):
            texts += [str(t)[:300] for t in table[col]]
    return list(dict.fromkeys(t for t in texts if t.strip()))


def resampled(base: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors resampled from ``base`` (see the module docstring) and the planted
    copies ``c`` (row c is a near-copy of row c + 1)."""
    rng = np.random.default_rng(seed)
    d = base.shape[1]
    x = base[rng.integers(0, len(base), n)] + 0.5 * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    copies = rng.choice(n - 1, size=n // 100, replace=False)
    x[copies] = x[copies + 1] + 0.005 * rng.standard_normal((len(copies), d), dtype=np.float32) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, copies


def blocked_pairs_above(vectors: np.ndarray, threshold: float,
                        max_per_row: int = 20) -> tuple[np.ndarray, ...]:
    """The hand-written blocked search prefaudit used before FAISS (verbatim), the baseline."""
    n = len(vectors)
    step = max(1, BLOCK_BYTES // (4 * max(n, 1)))
    out_i, out_j, out_s = [], [], []
    for start in range(0, n, step):
        s = vectors[start:start + step] @ vectors.T
        rows = np.arange(len(s))
        s[rows, start + rows] = -np.inf
        hit = np.flatnonzero(s.max(axis=1) >= threshold)
        if not len(hit):
            continue
        r, c = np.nonzero(s[hit] >= threshold)
        r = hit[r]
        v = s[r, c]
        counts = np.bincount(r, minlength=len(s))
        if counts.max() > max_per_row:
            order = np.lexsort((c, -v, r))
            r, c, v = r[order], c[order], v[order]
            rank = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = rank < max_per_row
            r, c, v = r[keep], c[keep], v[keep]
        out_i.append(r + start)
        out_j.append(c)
        out_s.append(v)
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.float32)
    i, j, v = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    _, first = np.unique(lo * n + hi, return_index=True)
    return lo[first], hi[first], v[first].astype(np.float32)


CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
import bench_neighbors as B
from prefaudit.similarity import neighbors
method, n, base_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
x, copies = B.resampled(np.load(base_path), n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if method == "blocked":
    i, j, _ = B.blocked_pairs_above(x, B.THRESHOLD)
    info = {}
else:
    exact_max = {"ivf": 0, "exact": n}.get(method)  # "faiss": the package default
    i, j, _ = neighbors.pairs_above(x, B.THRESHOLD, exact_max=exact_max)
    info = vars(neighbors.LAST)
dt = time.perf_counter() - t0
found = set(zip(i.tolist(), j.tolist()))
planted = sum((int(c), int(c) + 1) in found for c in copies)
np.save(sys.argv[5], np.stack([i, j], axis=1))
print(json.dumps({"seconds": dt, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "data_mib": before / 1024, "pairs": len(i), "planted_found": planted,
                  "planted": len(copies), "info": info}))
"""


def measure(method: str, n: int, base_path: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, method, str(n), str(base_path),
                          str(Path(__file__).parent), str(out)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{method} at {n} failed:\n{res.stderr[-3000:]}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    info = r["info"]
    how = "" if not info else (f" [{info['method']}" + (f": {info['nlist']} cells, nprobe {info['nprobe']}, "
                                                        f"sample recall {info['recall']:.4f}]"
                                                        if info["method"] == "ivf" else "]"))
    print(f"  n={n:>9,} {method:<8} {r['seconds']:8.2f} s  peak RSS {r['peak_mib']:7,.0f} MiB "
          f"(vectors alone {r['data_mib']:6,.0f})  pairs {r['pairs']:>8,}  planted found "
          f"{r['planted_found']:,}/{r['planted']:,}{how}")
    return r


def compare(a: Path, b: Path, name_a: str, name_b: str) -> None:
    sa = {tuple(p) for p in np.load(a).tolist()}
    sb = {tuple(p) for p in np.load(b).tolist()}
    print(f"    {name_b} finds {len(sa & sb) / max(len(sa), 1):.4f} of {name_a}'s {len(sa):,} pairs; "
          f"{len(sb - sa):,} extra; identical sets: {sa == sb}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: prefaudit's)")
    ap.add_argument("--plan", default=None, help="e.g. '50000:blocked,faiss,ivf;1000000:faiss'")
    ap.add_argument("--base", type=Path, default=None,
                    help="the real embeddings as a .npy (from --save-base), for a machine without the model")
    ap.add_argument("--save-base", type=Path, default=None, help="write the real embeddings here and stop")
    args = ap.parse_args()
    import tempfile

    plan = args.plan or ("20000:blocked,faiss;50000:faiss,ivf" if args.quick
                         else "50000:blocked,faiss,ivf;200000:blocked,faiss;1000000:faiss")
    if args.base is None:
        from prefaudit.scoring.embed import embed

        base = embed(real_texts(), cache_dir=args.cache_dir, progress=False)
    else:
        base = np.load(args.base)
    if args.save_base:
        np.save(args.save_base, base)
        return
    print(f"{len(base):,} real texts embedded (MiniLM), resampled; pairs with cosine >= {THRESHOLD}")
    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "base.npy"
        np.save(base_path, base)
        for step in plan.split(";"):
            n_text, methods = step.split(":")
            n = int(n_text)
            outs = {m: Path(tmp) / f"{m}-{n}.npy" for m in methods.split(",")}
            for m, out in outs.items():
                measure(m, n, base_path, out)
            ref = "blocked" if "blocked" in outs else ("faiss" if "faiss" in outs else None)
            for m in outs:
                if ref and m != ref:
                    compare(outs[ref], outs[m], ref, m)


if __name__ == "__main__":
    main()
