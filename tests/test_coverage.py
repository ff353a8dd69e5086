"""Coverage analyzer on real prompts: planted topic gap, planted near-duplicates, cache, audit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from prefaudit.analyzers.coverage import analyze_coverage
from prefaudit.audit import audit
from prefaudit.errors import ConfigError, DataFormatError
from prefaudit.loaders.prompts import load_prompts
from prefaudit.scoring import embed as E

GAP = "CaseStudy/Constraint"


def _table(records: list[tuple[str, str, str]], prefix: str = "p") -> pd.DataFrame:
    return pd.DataFrame({
        "pair_id": [f"{prefix}{i}" for i in range(len(records))],
        "prompt": [r[0] for r in records], "chosen": [r[1] for r in records],
        "rejected": [r[2] for r in records], "annotator": pd.NA, "tie": False,
        "strength": np.nan, "source": "llmbar",
    })


def _llmbar(path) -> list[tuple[str, str, str]]:
    out = []
    for r in json.loads(path.read_text()):
        good, bad = (r["output_1"], r["output_2"]) if r["label"] == 1 else (r["output_2"], r["output_1"])
        out.append((r["input"], good, bad))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def gap_setup(shared_data, cache):
    """Preference: 300 LLMBar prompts without the Constraint subset; targets: 100 held-out
    prompts of the same pool (same distribution) and the 89 Constraint prompts (the gap)."""
    root = shared_data / "llmbar" / "Dataset"
    gap = list(dict.fromkeys(r[0] for r in _llmbar(root / GAP / "dataset.json")))
    pool: dict[str, tuple[str, str, str]] = {}
    for f in sorted(root.glob("**/dataset.json")):
        if GAP not in str(f):
            for rec in _llmbar(f):
                if rec[0] not in gap:
                    pool.setdefault(rec[0], rec)
    keys = sorted(pool)
    order = np.random.default_rng(0).permutation(len(keys))
    pref = [pool[keys[i]] for i in order[:300]]
    same = [keys[i] for i in order[300:400]]
    table = _table(pref)
    result = analyze_coverage(table, target=same + gap, cache_dir=cache)
    return table, same, gap, result


def test_planted_gap_is_flagged_uncovered(gap_setup):
    _, same, gap, res = gap_setup
    flagged = set(res.tables["uncovered_target_prompts"]["prompt"])
    hit = len(flagged & set(gap))
    assert hit / len(gap) >= 0.8, f"recall {hit / len(gap):.2f}"
    assert hit / len(flagged) >= 0.7, f"precision {hit / len(flagged):.2f}"
    unc = res.tables["uncovered_target_clusters"]
    assert len(unc) >= 1 and res.metrics["n_uncovered_target_clusters"].value == len(unc)
    assert res.metrics["target_uncovered_share"].value == pytest.approx(
        len(flagged) / (len(same) + len(gap)))


def test_same_distribution_target_is_covered(gap_setup, cache):
    table, same, _, _ = gap_setup
    before = E.texts_encoded()
    res = analyze_coverage(table, target=same, cache_dir=cache)
    assert E.texts_encoded() == before  # everything came from the cache
    assert res.metrics["target_uncovered_share"].value < 0.05
    assert 0.3 < res.metrics["target_mean_nn_similarity"].value < 1.0


def test_cached_rerun_embeds_nothing_and_repeats_the_numbers(gap_setup, cache):
    table, same, gap, first = gap_setup
    before = E.texts_encoded()
    again = analyze_coverage(table, target=same + gap, cache_dir=cache)
    assert E.texts_encoded() == before
    assert again.flat_metrics() == first.flat_metrics()
    pd.testing.assert_frame_equal(again.tables["clusters"], first.tables["clusters"])
    assert again.figures["map"] == first.figures["map"]


def test_clusters_table_and_pair_data(gap_setup):
    table, _, _, res = gap_setup
    k = int(res.metrics["n_clusters"].value)
    assert k == 12 == res.params["n_clusters"]  # round(sqrt(300 / 2))
    clusters = res.tables["clusters"]
    assert len(clusters) == k and clusters["n_pairs"].sum() == len(table)
    assert clusters["pair_share"].sum() == pytest.approx(1.0)
    assert (clusters["label"].str.len() > 0).all() and (clusters["examples"].str.len() > 0).all()
    eff = res.metrics["effective_clusters"].value
    assert 1.0 < eff <= k
    assert res.metrics["largest_cluster_share"].value == pytest.approx(clusters["pair_share"].max())
    assert list(res.pair_data.index) == list(table["pair_id"])
    assert res.pair_data["cluster"].between(0, k - 1).all()
    assert len(res.figures["map"]["x"]) == 300 + 189
    groups = set(res.figures["map"]["groups"])
    assert {g for g in groups if g.startswith("target")} == {"target, covered", "target, uncovered"}
    assert {g for g in groups if g.startswith("cluster")} == {f"cluster {c}" for c in range(k)}


@pytest.fixture(scope="module")
def planted_dups(sample_dir, cache):
    """LLMBar Natural (100 distinct prompts, none above cosine 0.8 of another) plus planted copies."""
    base = _llmbar(sample_dir / "llmbar_natural.json")
    paraphrase = {36: "Give me 10 synonyms for the word 'sad'.",
                  90: "Write an original proverb describing friendship.",
                  63: "Combine the words in the following list by giving an example sentence. "
                      "Words: flexible, practical, smart."}
    planted = [(base[i][0], "A different answer.", "Another answer.", "exact", i) for i in (5, 17)]
    planted += [("  " + base[i][0].upper() + "\n", "Fresh reply one.", "Fresh reply two.", "normalised", i)
                for i in (9, 27)]
    planted += [(text, "Paraphrase reply.", "Other reply.", "semantic", i) for i, text in paraphrase.items()]
    # a repeated comparison: the same prompt and responses, with the label reversed
    planted.append((base[45][0], base[45][2], base[45][1], "exact", 45))
    rows = base + [p[:3] for p in planted]
    table = _table(rows)
    return table, planted, analyze_coverage(table, cache_dir=cache)


def test_planted_near_duplicates_found_with_their_kind(planted_dups):
    table, planted, res = planted_dups
    dups = res.tables["near_duplicates"].set_index("pair_id")
    n = 100
    for k, (_, _, _, kind, orig) in enumerate(planted):
        pid = f"p{n + k}"
        assert dups.loc[pid, "kind"] == kind, pid
        assert dups.loc[pid, "other_pair_id"] == f"p{orig}"
        assert dups.loc[pid, "similarity"] >= 0.9
    # only the planted copies and their originals are flagged: distinct prompts are not
    expected = {f"p{n + k}" for k in range(len(planted))} | {f"p{p[4]}" for p in planted}
    flags = res.pair_flags
    assert set(flags.loc[flags["reason"] == "near_duplicate_prompt", "pair_id"]) == expected
    assert res.metrics["near_duplicate_share"].value == pytest.approx(len(expected) / len(table))
    detail = flags.loc[flags["pair_id"] == f"p{n + 4}", "detail"].iloc[0]
    assert "semantic duplicate of pair p36" in detail and "cosine 0.9" in detail


def test_repeated_comparison_is_a_duplicate_pair(planted_dups):
    _, planted, res = planted_dups
    pair_flags = res.pair_flags[res.pair_flags["reason"] == "near_duplicate_pair"]
    assert list(pair_flags["pair_id"]) == [f"p{100 + len(planted) - 1}"]
    assert "p45" in pair_flags["detail"].iloc[0] and "labels reversed" in pair_flags["detail"].iloc[0]
    assert res.metrics["n_near_duplicate_pairs"].value == 1
    assert res.metrics["n_reversed_duplicate_pairs"].value == 1
    assert res.metrics["target_uncovered_share"].value is None
    assert any("no target" in n for n in res.notes)


def test_audit_end_to_end_with_multi_annotator_table(sample_dir, cache):
    """PandaLM-like shape: several judgements per pair and many pairs per prompt."""
    base = _llmbar(sample_dir / "llmbar_natural.json")[:30]
    rows = []
    for i, (p, good, bad) in enumerate(base):
        for m in range(2):  # two model pairs per prompt
            for a in ("ann1", "ann2", "ann3"):
                rows.append({"pair_id": f"q{i}m{m}", "prompt": p, "chosen": good + str(m),
                             "rejected": bad + str(m), "annotator": a, "tie": False,
                             "strength": np.nan, "source": "t"})
    table = pd.DataFrame(rows)
    target = [r[0] for r in _llmbar(sample_dir / "llmbar_natural.json")[30:60]]
    result = audit(table, ["coverage"], options={"coverage": {"target": target, "cache_dir": cache}})
    m = result.metrics
    for name in ("n_clusters", "effective_clusters", "near_duplicate_share", "target_uncovered_share"):
        assert m[f"coverage.{name}"] is not None, name
    assert m["coverage.n_clusters"] == 4  # round(sqrt(30 / 2)) on 30 unique prompts
    # every pair shares its prompt with the other model pair: exact, over pairs (not judgements)
    assert m["coverage.near_duplicate_share"] == 1.0
    assert len(result.results["coverage"].pair_data) == 60
    json.dumps(result.to_dict(), default=str)


def test_bad_parameters_and_targets(planted_dups):
    table = planted_dups[0]
    with pytest.raises(ConfigError, match="similarity_threshold"):
        analyze_coverage(table, similarity_threshold=1.5, embedder=lambda t: np.eye(len(t)))
    with pytest.raises(ConfigError, match="not one string"):
        analyze_coverage(table, target="prompts.txt", embedder=lambda t: np.eye(len(t)))
    with pytest.raises(ConfigError, match="target prompt 1 is int"):
        analyze_coverage(table, target=["ok", 5], embedder=lambda t: np.eye(len(t)))


def test_load_prompts_from_txt_loader_file_and_plain_records(tmp_path, sample_dir):
    txt = tmp_path / "t.txt"
    txt.write_text("first prompt\n\nsecond prompt\nfirst prompt\n", encoding="utf-8")
    assert load_prompts(txt) == ["first prompt", "second prompt", "first prompt"]
    hh = load_prompts(sample_dir / "hh_rlhf_harmless_test_300.jsonl")
    assert len(hh) == len(set(hh)) == 300 and all("Human:" in p for p in hh)
    plain = tmp_path / "eval.jsonl"
    plain.write_text('{"instruction": "Name a colour."}\n{"turns": ["Hi there", "More"]}\n', encoding="utf-8")
    assert load_prompts(plain) == ["Name a colour.", "Hi there"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": 7}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.jsonl, line 2, field 'instruction'"):
        load_prompts(bad)
    nontext = tmp_path / "x.txt"
    nontext.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(DataFormatError, match="line 2"):
        load_prompts(nontext)
    with pytest.raises(DataFormatError, match="no such file"):
        load_prompts(tmp_path / "missing.txt")
