"""The 1M-pair benchmark's generator plants what it says, and the audit finds it (small n)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from prefaudit.analyzers.agreement import analyze_agreement
from prefaudit.analyzers.hygiene import analyze_hygiene
from prefaudit.loaders import load

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generated(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "pairs.jsonl"
    return path, bench.write_pairs(path, 4000, seed=0)


def test_generator_is_seeded(bench, generated, tmp_path):
    path, counts = generated
    again = tmp_path / "again.jsonl"
    assert bench.write_pairs(again, 4000, seed=0) == counts
    assert again.read_bytes() == path.read_bytes()


def test_planted_duplicates_and_multi_annotator_slice_are_found(generated):
    path, counts = generated
    loaded = load(path)
    table = loaded.table
    assert table["pair_id"].nunique() == counts["pairs"]
    assert loaded.report.n_records == counts["pairs"] + 2 * counts["multi_annotator_pairs"]
    hy = analyze_hygiene(table)
    n = counts["pairs"]
    flags = hy.pair_flags
    dup = flags.loc[flags["reason"] == "duplicate_pair", "pair_id"].nunique()
    contra = flags.loc[flags["reason"] == "contradictory_duplicate", "pair_id"].nunique()
    assert dup == counts["duplicate_pairs"]  # each copy of an agreeing judgement, not its original
    # copies and originals
    assert counts["contradictory_pairs"] <= contra <= 3 * counts["contradictory_pairs"]
    assert hy.metrics["duplicate_pair_share"].value == pytest.approx(dup / n)
    ag = analyze_agreement(table, n_bootstrap=50)
    assert ag.metrics["n_pairs_multi"].value == counts["multi_annotator_pairs"]
    assert ag.metrics["n_annotators"].value == 20
    # each annotator agrees with the truth with probability 0.8: pairwise raw agreement 0.8^2 + 0.2^2
    assert ag.metrics["raw_agreement"].value == pytest.approx(0.68, abs=0.04)

