"""FAISS neighbour search: equal to brute force when exact, measured recall when IVF (real MiniLM
vectors), the ``max_per_row`` cap, and one text normalisation for hygiene and coverage."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from prefaudit.analyzers.coverage import analyze_coverage
from prefaudit.analyzers.hygiene import analyze_hygiene
from prefaudit.loaders import load
from prefaudit.scoring import embed as E
from prefaudit.similarity import neighbors


def _brute(x: np.ndarray) -> np.ndarray:
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    return full


@pytest.mark.parametrize("n", [57, 400])
def test_exact_search_matches_brute_force(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[5] = x[3] + 0.01  # a planted near-copy
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    full = _brute(x)
    idx, sim = neighbors.top_k(x, x, 3, self_offset=0)
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(sim, np.sort(full, axis=1)[:, ::-1][:, :3], rtol=1e-5)
    i, j, s = neighbors.pairs_above(x, 0.5, max_per_row=n)
    bi, bj = np.nonzero(np.triu(full >= 0.5, 1))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == set(zip(bi.tolist(), bj.tolist(), strict=True))
    assert (3, 5) in set(zip(i.tolist(), j.tolist(), strict=True))
    np.testing.assert_allclose(s, full[i, j], rtol=1e-5)


def test_top_k_pads_when_the_base_is_small_and_breaks_ties_by_index():
    x = np.ones((3, 4), dtype=np.float32) / 2  # three identical vectors
    idx, sim = neighbors.top_k(x, x, 4, self_offset=0)
    np.testing.assert_array_equal(idx, [[1, 2, -1, -1], [0, 2, -1, -1], [0, 1, -1, -1]])
    assert np.isneginf(sim[:, 2:]).all()


def test_pairs_above_caps_partners_per_row():
    x = np.ones((30, 8), dtype=np.float32) / np.sqrt(8)  # 30 identical vectors
    i, j, _ = neighbors.pairs_above(x, 0.99, max_per_row=4)
    partners = np.bincount(np.concatenate([i, j]), minlength=30)
    assert len(i) <= 30 * 4 and partners.min() >= 4


@pytest.fixture(scope="module")
def real_vectors(sample_dir, tmp_path_factory) -> np.ndarray:
    """MiniLM vectors of 120 real prompts and responses (LLMBar Natural, PandaLM), cut to 160
    characters to keep the CPU pass short."""
    texts = []
    for r in json.loads((sample_dir / "llmbar_natural.json").read_text()):
        texts += [r["input"], r["output_1"], r["output_2"]]
    for r in json.loads((sample_dir / "pandalm_testset_v1.json").read_text()):
        texts += [r["instruction"], str(r["response1"]), str(r["response2"])]
    texts = list(dict.fromkeys(t[:160] for t in texts if t.strip()))[:120]
    return E.embed(texts, cache_dir=tmp_path_factory.mktemp("emb"), progress=False)


def _resample(vectors: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors drawn from the real ones, each moved by Gaussian noise of norm ~``noise``."""
    rng = np.random.default_rng(seed)
    out = vectors[rng.integers(0, len(vectors), n)]
    out = out + noise * rng.normal(size=out.shape).astype(np.float32) / np.sqrt(out.shape[1])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_ivf_recall_on_real_embeddings(real_vectors):
    k = 10
    base = _resample(real_vectors, 4000, 0.5, seed=1)
    exact_idx, _ = neighbors.top_k(base, base, k, self_offset=0)
    assert neighbors.LAST.method == "exact"
    ivf_idx, ivf_sim = neighbors.top_k(base, base, k, self_offset=0, exact_max=0, seed=3)
    info = neighbors.LAST
    assert info.method == "ivf" and 1 <= info.nprobe < info.nlist  # cheaper than visiting every cell
    recall = np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(exact_idx, ivf_idx, strict=True)])
    assert recall >= 0.99, (recall, info)
    # the similarities IVF reports are the true inner products of the rows it returns
    np.testing.assert_allclose(ivf_sim, np.einsum("id,ikd->ik", base, base[ivf_idx]), atol=1e-5)
    again = neighbors.top_k(base, base, k, self_offset=0, exact_max=0, seed=3)
    np.testing.assert_array_equal(again[0], ivf_idx)  # seeded: the same answer twice


def test_ivf_finds_the_same_near_duplicates_as_exact(real_vectors):
    rng = np.random.default_rng(0)
    base = _resample(real_vectors, 2000, 0.5, seed=0)
    copies = rng.choice(len(base), 40, replace=False)
    base[copies] = base[(copies + 1) % len(base)] + 0.005 * rng.normal(size=(40, base.shape[1]))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    exact = neighbors.pairs_above(base, 0.97)
    ivf = neighbors.pairs_above(base, 0.97, exact_max=0)
    assert neighbors.LAST.method == "ivf"
    e = set(zip(exact[0].tolist(), exact[1].tolist(), strict=True))
    f = set(zip(ivf[0].tolist(), ivf[1].tolist(), strict=True))
    assert {(min(c, (c + 1) % 2000), max(c, (c + 1) % 2000)) for c in copies.tolist()} <= e
    assert len(e & f) / len(e) >= 0.99 and f <= e


def _hash_embedder(texts: list[str]) -> np.ndarray:
    """Deterministic stand-in vectors (the count of unique prompts does not depend on them)."""
    seeds = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "little") for t in texts]
    return np.stack([np.random.default_rng(s).normal(size=16) for s in seeds]).astype(np.float32)


def test_hygiene_and_coverage_count_the_same_unique_prompts(sample_dir):
    table = load(sample_dir / "planted_defects.jsonl").table
    raw = table["prompt"].nunique()
    hy = analyze_hygiene(table).metrics["n_unique_prompts"].value
    cov = analyze_coverage(table, embedder=_hash_embedder).metrics["n_unique_prompts"].value
    assert hy == cov < raw  # the planted case/whitespace variants collapse in both
