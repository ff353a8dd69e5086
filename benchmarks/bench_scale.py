"""A million pairs on one machine: ``prefaudit audit --analyzers hygiene,agreement,length
--no-pdf`` against ``pandas.read_json(lines=True)`` on the same file.

The file is AlpacaFarm-style JSONL (``instruction``, ``output_1``, ``output_2``,
``preference``, ``annotator``), generated with a seed from the real texts in ``sample_data/``
(prompts and responses of PandaLM, HH-RLHF, LLMBar, LLaMA-Factory, each cut to
:data:`MAX_CHARS` characters and made distinct by a numbered tag, as in a real set where
almost every prompt and response is new). Planted on purpose:

* a multi-annotator slice: :data:`MULTI_SHARE` of the pairs judged by 3 of 20 named
  annotators (each agreeing with the pair's true label with probability 0.8); the other
  pairs have one judgement and no annotator name, as in most public DPO sets; 2% of those
  labels are ties;
* :data:`DUP_SHARE` of the pairs repeat an earlier single-judgement pair with the prompt's
  case and spacing changed (hygiene: normalised duplicate pairs), half of them with the
  outputs swapped and the preference flipped, so the label agrees;
* :data:`CONTRA_SHARE` repeat an earlier pair with the same label slot but swapped outputs
  (a contradiction: hygiene counts both members).

Each measured step runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own:
the pandas read (time, peak RSS and the frame's ``memory_usage(deep=True)``), then the CLI
itself with the time and running peak RSS after each stage (load, each analyzer, audit.json,
report.html). Targets: audit time <= 6x the pandas read, audit peak RSS <= 3x the frame.

    python benchmarks/bench_scale.py              # 1,000,000 pairs (file ~0.9 GB, kept in --dir)
    python benchmarks/bench_scale.py --quick      # 50,000 pairs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MAX_CHARS = 400
MULTI_SHARE = 0.05
DUP_SHARE = 0.01
CONTRA_SHARE = 0.002
N_EXPERTS = 20


def real_texts() -> tuple[list[str], list[str]]:
    """Distinct real prompts and responses from ``sample_data/``, cut to :data:`MAX_CHARS`."""
    from prefaudit.loaders import load

    prompts: list[str] = []
    responses: list[str] = []
    for name in ("pandalm_testset_v1.json", "hh_rlhf_harmless_test_300.jsonl", "llmbar_natural.json",
                 "llama_factory_dpo_en_100.json"):
        table = load(REPO / "sample_data" / name).table
        prompts += table["prompt"].tolist()
        responses += table["chosen"].tolist() + table["rejected"].tolist()

    def distinct(texts: list[str]) -> list[str]:
        return list(dict.fromkeys(t[:MAX_CHARS] for t in texts if t.strip()))

    return distinct(prompts), distinct(responses)


def write_pairs(path: Path, n_pairs: int, seed: int = 0) -> dict[str, int]:
    """Write ``n_pairs`` pairs to ``path`` (see the module docstring); returns the planted counts."""
    prompts, responses = real_texts()
    rng = np.random.default_rng(seed)
    n_multi = int(n_pairs * MULTI_SHARE)
    n_dup, n_contra = int(n_pairs * DUP_SHARE), int(n_pairs * CONTRA_SHARE)
    n_plain = n_pairs - n_multi - n_dup - n_contra
    p_idx = rng.integers(0, len(prompts), n_pairs)
    r_idx = rng.integers(0, len(responses), (n_pairs, 2))
    truth = rng.integers(1, 3, n_pairs)
    tie = rng.random(n_pairs) < 0.02
    kind = np.array(["plain"] * n_plain + ["multi"] * n_multi + ["dup"] * n_dup + ["contra"] * n_contra)
    kind = kind[rng.permutation(n_pairs)]
    kind[: max(1, n_pairs // 100)] = "plain"  # duplicates need earlier originals
    records: list[dict] = []
    single: list[int] = []  # records of plain single-judgement pairs, for copies
    counts = {"pairs": n_pairs, "multi_annotator_pairs": 0, "duplicate_pairs": 0, "contradictory_pairs": 0}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_pairs):
            k = kind[i]
            if k in ("dup", "contra") and single:
                pick = int(rng.integers(0, len(single)))  # each original is copied at most once
                single[pick], single[-1] = single[-1], single[pick]
                src = records[single.pop()]
                variant = "  " + src["instruction"].upper() + "\n"
                swap = k == "contra" or rng.random() < 0.5
                o1, o2 = (src["output_2"], src["output_1"]) if swap else (src["output_1"], src["output_2"])
                pref = src["preference"]
                if swap and k == "dup":
                    pref = 3 - pref  # outputs swapped, label follows: the same judgement
                rec = {"instruction": variant, "output_1": o1, "output_2": o2, "preference": pref}
                counts["duplicate_pairs" if k == "dup" else "contradictory_pairs"] += 1
                f.write(json.dumps(rec) + "\n")
                continue
            rec = {"instruction": f"{prompts[p_idx[i]]} [#{i}]",
                   "output_1": f"{responses[r_idx[i, 0]]} [{i}a]",
                   "output_2": f"{responses[r_idx[i, 1]]} [{i}b]"}
            if k == "multi":
                counts["multi_annotator_pairs"] += 1
                for a in rng.choice(N_EXPERTS, 3, replace=False):
                    agree = rng.random() < 0.8
                    f.write(json.dumps({**rec, "preference": int(truth[i] if agree else 3 - truth[i]),
                                        "annotator": f"expert{a}"}) + "\n")
                continue
            rec = {**rec, "preference": 0 if tie[i] else int(truth[i])}
            records.append(rec)
            if rec["preference"]:  # copies are made of non-tie judgements only
                single.append(len(records) - 1)
            f.write(json.dumps(rec) + "\n")
    return counts


PANDAS_CHILD = r"""
import json, resource, sys, time
import pandas as pd
t0, c0 = time.perf_counter(), time.process_time()
df = pd.read_json(sys.argv[1], lines=True)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"rows": len(df), "seconds": dt, "cpu_seconds": cpu,
                  "frame_bytes": int(df.memory_usage(deep=True).sum()),
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

AUDIT_CHILD = r"""
import json, resource, sys, time
import importlib
A = importlib.import_module("prefaudit.audit")
import prefaudit.cli as C
R = importlib.import_module("prefaudit.report")
stages = []
t_start, c_start = time.perf_counter(), time.process_time()

def mark(name, t0, c0):
    stages.append({"stage": name, "seconds": time.perf_counter() - t0,
                   "cpu_seconds": time.process_time() - c0,
                   "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})

def timed(name, fn):
    def run(*a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*a, **k)
        mark(name, t0, c0)
        return out
    return run

C._load = timed("load", C._load)
_lookup = A.analyzer_function
A.analyzer_function = lambda name: timed(name, _lookup(name))
_write = A.AuditResult.write
A.AuditResult.write = lambda self, out: timed("audit.json + pair_flags.csv", _write)(self, out)
R.write_reports = timed("report.html", R.write_reports)
code = C.main(sys.argv[1:])
total, cpu = time.perf_counter() - t_start, time.process_time() - c_start
print(json.dumps({"exit": code, "seconds": total, "cpu_seconds": cpu, "stages": stages,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(path: Path, out_dir: Path) -> dict:
    """Measure the pandas read and the audit on ``path``; print and return the figures."""
    pd_res = _child(PANDAS_CHILD, str(path))
    au = _child(AUDIT_CHILD, "audit", str(path), "--analyzers", "hygiene,agreement,length", "--no-pdf",
                "--no-gate", "--out", str(out_dir))
    mib = 1024.0
    print(f"file: {path} ({path.stat().st_size / 2**20:,.0f} MiB, {pd_res['rows']:,} records)")
    print(f"pandas.read_json(lines=True): {pd_res['seconds']:7.1f} s (CPU {pd_res['cpu_seconds']:7.1f} s), "
          f"peak RSS {pd_res['peak_kib'] / mib:7,.0f} MiB, "
          f"frame {pd_res['frame_bytes'] / 2**20:7,.0f} MiB (memory_usage deep)")
    print(f"prefaudit audit (exit {au['exit']}):  {au['seconds']:7.1f} s (CPU {au['cpu_seconds']:7.1f} s), "
          f"peak RSS {au['peak_kib'] / mib:7,.0f} MiB")
    for s in au["stages"]:
        print(f"  {s['stage']:<28} {s['seconds']:7.1f} s (CPU {s['cpu_seconds']:7.1f} s)   "
              f"peak RSS so far {s['peak_kib'] / mib:7,.0f} MiB")
    t_ratio = au["seconds"] / pd_res["seconds"]
    c_ratio = au["cpu_seconds"] / pd_res["cpu_seconds"]
    m_ratio = au["peak_kib"] * 1024 / pd_res["frame_bytes"]
    print(f"time ratio audit / pandas read: {t_ratio:5.2f}x (target <= 6x)  "
          f"{'OK' if t_ratio <= 6 else 'MISSED'}; in CPU seconds {c_ratio:5.2f}x")
    print(f"peak RSS / pandas frame:        {m_ratio:5.2f}x (target <= 3x)  "
          f"{'OK' if m_ratio <= 3 else 'MISSED'}")
    return {"pandas": pd_res, "audit": au, "time_ratio": t_ratio, "cpu_ratio": c_ratio,
            "memory_ratio": m_ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000 pairs")
    ap.add_argument("--n", type=int, default=None, help="number of pairs (default 1,000,000)")
    ap.add_argument("--dir", default=None, help="folder for the generated file (kept; default a temp folder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.n or (50_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"pairs_{n}_seed{args.seed}.jsonl"
        if not path.is_file():
            print(f"writing {n:,} pairs to {path}: {write_pairs(path, n, args.seed)}")
        run(path, Path(tmp) / "audit")


if __name__ == "__main__":
    main()
