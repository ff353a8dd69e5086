"""Benchmark the hygiene analyzer on many pairs against pandas' own exact de-duplication.

Builds N pairs from the bundled HH-RLHF sample (each text suffixed with its pair number so no
two are identical), then makes every 50th pair an exact copy of the pair before it and every
101st pair's chosen empty, and times in the same process:

- baseline: ``table.duplicated(["prompt", "chosen", "rejected"])`` — the exact-duplicate check
  a user would write by hand (no normalisation, no order-swaps, nothing else);
- a full ``analyze_hygiene`` run, before the stages, so that its peak RSS over the built table
  is its own;
- the analyzer's costliest stages alone: codes of the normalised texts (Unicode/case/whitespace,
  :func:`prefaudit.text.text_codes`) of the three text columns, the encoding-damage check, the
  truncation rule.

Prints seconds per stage, pairs per second, the ratio of the full run to the baseline and the
full run's peak RSS over the table, and checks that the planted duplicates and empties are
counted exactly. ``--quick`` runs 20,000 pairs for CI.

    python benchmarks/bench_hygiene.py [--pairs 200000] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prefaudit.analyzers.hygiene import analyze_hygiene
from prefaudit.loaders import load
from prefaudit.text import encoding_damage, text_codes, truncation_sign

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "hh_rlhf_harmless_test_300.jsonl"
DUP_EVERY, EMPTY_EVERY = 50, 101


def make_pairs(n: int) -> pd.DataFrame:
    base = load(SAMPLE).table
    base = base[(base["chosen"].str.strip() != "") & (base["rejected"].str.strip() != "")]
    reps = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    tag = pd.Series([f" #{i}" for i in range(n)])
    for col in ("prompt", "chosen", "rejected"):
        reps[col] = reps[col] + tag
    dup = np.arange(DUP_EVERY, n, DUP_EVERY)
    for col in ("prompt", "chosen", "rejected"):
        reps.loc[dup, col] = reps.loc[dup - 1, col].to_numpy()
    reps.loc[np.arange(EMPTY_EVERY, n, EMPTY_EVERY), "chosen"] = ""
    reps["pair_id"] = [f"b{i}" for i in range(n)]
    reps["load_flags"] = ""
    return reps


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="20,000 pairs")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.pairs
    table = make_pairs(n)
    texts = pd.concat([table["prompt"], table["chosen"], table["rejected"]], ignore_index=True)

    baseline, *t_base = timed(lambda: table.duplicated(["prompt", "chosen", "rejected"]))
    rss_table = _peak_rss_mib()
    res, *t_full = timed(analyze_hygiene, table)
    rss_full = _peak_rss_mib() - rss_table
    _, *t_norm = timed(text_codes, texts, normalized=True)
    _, *t_enc = timed(encoding_damage, texts)
    _, *t_trunc = timed(truncation_sign, pd.concat([table["chosen"], table["rejected"]], ignore_index=True))

    m = res.flat_metrics()
    n_empty = len(range(EMPTY_EVERY, n, EMPTY_EVERY))
    # A duplicate whose chosen (or whose original's chosen) was then emptied is no longer one.
    expected_dup = {f"b{i}" for i in range(DUP_EVERY, n, DUP_EVERY)
                    if i % EMPTY_EVERY and (i - 1) % EMPTY_EVERY}
    assert int(baseline.sum()) == len(expected_dup), "baseline miscounted the planted duplicates"
    dup_ids = set(res.pair_flags.loc[res.pair_flags["reason"] == "duplicate_pair", "pair_id"])
    assert dup_ids == expected_dup, "hygiene missed or invented duplicates"
    assert round(m["hygiene.empty_response_share"] * n) == n_empty, "hygiene miscounted empty responses"

    print(f"pairs: {n:,}  texts: {len(texts):,}  mean chars/text: {texts.str.len().mean():.0f}")
    print("                                                    wall s     CPU s")
    for label, (wall, cpu) in (("baseline  DataFrame.duplicated (exact, 3 cols)", t_base),
                               ("stage     text_codes normalised (NFKC, ws)   ", t_norm),
                               ("stage     encoding_damage                    ", t_enc),
                               ("stage     truncation_sign (chosen + rejected) ", t_trunc),
                               ("full      analyze_hygiene                    ", t_full)):
        print(f"{label}  : {wall:8.2f}  {cpu:8.2f}")
    print(f"throughput analyze_hygiene: {n / t_full[0]:,.0f} pairs/s wall, {n / t_full[1]:,.0f} pairs/s CPU")
    print(f"ratio     full / baseline: {t_full[0] / t_base[0]:.1f}x wall, {t_full[1] / t_base[1]:.1f}x CPU")
    print(f"memory    analyze_hygiene peak RSS over the built table: +{rss_full:,.0f} MiB")
    print(f"check     duplicate_pair_share={m['hygiene.duplicate_pair_share']:.4f} "
          f"empty_response_share={m['hygiene.empty_response_share']:.4f} "
          f"flagged_share={m['hygiene.flagged_share']:.4f}")


if __name__ == "__main__":
    main()
