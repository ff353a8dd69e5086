"""Benchmark the agreement analyzer: alpha + bootstrap + Dawid–Skene on many pairs.

Simulates N pairs x 7 annotators (accuracies 0.95 ... 0.55, 10% missing labels, 10% true
ties; seeded), then times, in the same process:

- the whole ``analyze_agreement`` run (1,000 bootstrap resamples), and its peak traced memory
  (a second run under ``tracemalloc``, so the timing is not slowed by tracing);
- its stages: the label matrix, Krippendorff's alpha, the 1,000-resample bootstrap of alpha
  (grouped multinomial resampling, :mod:`prefaudit.stats.bootstrap`), Dawid–Skene EM;
- the naive bootstrap: ``krippendorff.alpha`` on a resampled matrix, 20 resamples timed and
  scaled to 1,000.

Prints seconds per stage and the bootstrap speed-up over the naive way (targets: whole
analyzer under 20 s on 2 CPU cores at 100,000 pairs; bootstrap at least 20x the naive way).

``--crowd`` instead simulates a crowd: 10,000 pairs x 200 annotators, 10% of the labels
missing (1.8 million judgements). The analyzer works on (pair, annotator, label) triples
and never builds the pairs x annotators label matrix; the script builds that matrix once in
the same run and prints the analyzer's CPU time and peak traced memory next to the matrix's
size and build time (it used to hold several copies of it: 467 s at this size).

    python benchmarks/bench_agreement.py            # 100,000 pairs x 7 annotators
    python benchmarks/bench_agreement.py --quick    # 10,000 pairs
    python benchmarks/bench_agreement.py --crowd [--quick]   # 10,000 (quick: 2,000) pairs x 200
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import krippendorff
import numpy as np
from _timing import timed  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from prefaudit.analyzers.agreement import analyze_agreement
from prefaudit.schema import label_matrix, validate
from prefaudit.stats import bootstrap, reliability
from prefaudit.stats.dawid_skene import fit_dawid_skene
from prefaudit.stats.simulate import simulate_judgements

ACCURACIES = [0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.55]
CROWD = np.linspace(0.95, 0.55, 200)
N_BOOTSTRAP = 1000
N_NAIVE = 20


def naive_bootstrap_seconds(labels: np.ndarray, seed: int) -> float:
    """Seconds for N_BOOTSTRAP resamples the naive way, scaled from N_NAIVE timed ones."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(N_NAIVE):
        idx = rng.integers(0, len(labels), len(labels))
        krippendorff.alpha(reliability_data=labels[idx].T, level_of_measurement="nominal")
    return (time.perf_counter() - start) / N_NAIVE * N_BOOTSTRAP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 pairs (CI-sized)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crowd", action="store_true", help="10,000 pairs x 200 annotators")
    args = parser.parse_args()
    if args.crowd:
        crowd(2_000 if args.quick else 10_000, args.seed)
        return
    n_pairs = 10_000 if args.quick else args.pairs

    table, _ = simulate_judgements(n_pairs, ACCURACIES, missing=0.1, tie_rate=0.1, seed=args.seed)
    table = validate(table)
    print(f"{n_pairs:,} pairs x {len(ACCURACIES)} annotators, {len(table):,} judgements")

    result, total = timed(analyze_agreement, table, seed=args.seed, n_bootstrap=N_BOOTSTRAP)
    tracemalloc.start()
    analyze_agreement(table, seed=args.seed, n_bootstrap=N_BOOTSTRAP)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    matrix, t_matrix = timed(label_matrix, table)
    labels = matrix.to_numpy()
    parts, t_parts = timed(lambda: reliability.alpha_parts(reliability.category_counts(labels)))
    alpha, t_alpha = timed(lambda: float(reliability.alpha_from_totals(parts.sum(axis=0))))
    boot, t_boot = timed(lambda: reliability.alpha_from_totals(
        bootstrap.bootstrap_sums(parts, N_BOOTSTRAP, 0)))
    low, high = bootstrap.percentile_interval(boot)
    fit, t_ds = timed(fit_dawid_skene, labels)
    expected, t_package = timed(krippendorff.alpha, reliability_data=labels.T, level_of_measurement="nominal")
    t_naive = naive_bootstrap_seconds(labels, args.seed)

    m = result.metrics
    print(f"alpha {alpha:.4f} [{low:.4f}, {high:.4f}] (krippendorff package: {expected:.4f}); "
          f"flip_rate {m['flip_rate'].value:.4f}; Dawid-Skene {fit.n_iter} iterations")
    print(f"{'label matrix':<34}{t_matrix:8.2f} s")
    print(f"{'alpha (per-pair parts + sum)':<34}{t_parts + t_alpha:8.3f} s   package: {t_package:.3f} s")
    print(f"{'bootstrap, 1,000 resamples':<34}{t_boot:8.3f} s")
    print(f"{'naive bootstrap (20 timed, x50)':<34}{t_naive:8.2f} s")
    print(f"{'Dawid-Skene EM':<34}{t_ds:8.3f} s")
    print(f"{'whole analyze_agreement':<34}{total:8.2f} s   (target < 20 s at 100,000 pairs)")
    print(f"bootstrap speed-up over naive: {t_naive / t_boot:,.0f}x   (target >= 20x)")
    print(f"peak traced memory of analyze_agreement: {peak / 2**20:,.0f} MiB; "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


def crowd(n_pairs: int, seed: int) -> None:
    """The analyzer on a wide crowd, against the dense label matrix it no longer builds."""
    table, _ = simulate_judgements(n_pairs, CROWD, missing=0.1, tie_rate=0.1, seed=seed)
    table = validate(table)
    print(f"{n_pairs:,} pairs x {len(CROWD)} annotators, {len(table):,} judgements")
    start = time.process_time()
    analyze_agreement(table, seed=seed, n_bootstrap=N_BOOTSTRAP)
    cpu = time.process_time() - start
    tracemalloc.start()
    analyze_agreement(table, seed=seed, n_bootstrap=N_BOOTSTRAP)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.process_time()
    matrix = label_matrix(table)
    matrix_cpu = time.process_time() - start
    dense = matrix.to_numpy().nbytes
    print(f"{'whole analyze_agreement':<34}{cpu:8.2f} CPU s   (was 467 s at 10,000 x 200)")
    print(f"{'dense label matrix (built once)':<34}{matrix_cpu:8.2f} CPU s, {dense / 2**20:,.0f} MiB")
    print(f"peak traced memory of analyze_agreement: {peak / 2**20:,.0f} MiB = "
          f"{peak / dense:.2f}x the dense label matrix")


if __name__ == "__main__":
    main()
