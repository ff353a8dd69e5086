"""Coverage: which kinds of prompts the preference data covers, repeats, or misses.

Works on the unique prompts (multi-annotator tables repeat a prompt per judgement, and
several pairs may share one) and reports shares over pairs. Steps:

1. embed the prompts (:func:`prefaudit.scoring.embed.embed`, all-MiniLM-L6-v2 by default,
   cached on disk);
2. topics: seeded k-means with k = round(sqrt(n_unique / 2)) clipped to [2, 50] (see
   :mod:`prefaudit.similarity.prompt_clusters`), each cluster with its share of pairs, a
   c-TF-IDF label and its most central prompts; concentration as the effective number of
   clusters, exp(entropy of the pair shares);
3. near-duplicate prompts and pairs (exact / normalised / semantic, see
   :mod:`prefaudit.similarity.near_duplicates`) found with FAISS (exact up to 20,000 prompts,
   an IVF index with measured recall beyond, see :mod:`prefaudit.similarity.neighbors`);
4. with a target prompt set: each target prompt's similarity to its nearest preference
   prompt, and whether its neighbourhood is covered. A target prompt is *uncovered* when,
   among its ``knn`` nearest neighbours in preference + target prompts, the share of
   preference prompts is below ``uncovered_ratio`` times the share expected if both sets
   came from one distribution (n_pref / (n_pref + n_target - 1)). This two-sample rule
   flags regions the target needs and the preference data lacks, whatever the absolute
   similarity level of the embedding model; an odd single prompt is not a region. Target
   clusters (seeded k-means on the target, same k rule) are reported with their mean
   nearest-neighbour similarity and uncovered share, and preference clusters that are no
   target prompt's nearest neighbour are reported as not needed by the target;
5. a 2-D PCA map of preference and target prompts (seeded subsample) for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from prefaudit.errors import ConfigError
from prefaudit.figures import Bars, Histogram, Scatter
from prefaudit.metrics import MetricSpec, declare
from prefaudit.results import AnalyzerResult, concat_flags, make_flags
from prefaudit.schema import to_pairs
from prefaudit.similarity.near_duplicates import pair_duplicates, prompt_duplicates
from prefaudit.similarity.neighbors import top_k
from prefaudit.similarity.prompt_clusters import (
    central_examples,
    ctfidf_labels,
    default_k,
    kmeans,
    shorten,
)
from prefaudit.text import normalize_text

METRICS = declare(
    "coverage", "Prompt coverage",
    MetricSpec("n_clusters", "number of prompt clusters (k-means on unique prompts, k by the stated rule)"),
    MetricSpec("effective_clusters",
               "exp(entropy of the pair share per cluster): how many equally large topics the data is "
               "worth; far below n_clusters means a few topics dominate"),
    MetricSpec("largest_cluster_share", "share of pairs in the largest prompt cluster"),
    MetricSpec("n_unique_prompts",
               "number of distinct prompts after normalising case/whitespace/Unicode (as hygiene)"),
    MetricSpec("near_duplicate_share",
               "share of pairs whose prompt is an exact, case/whitespace or semantic (cosine >= "
               "similarity_threshold) duplicate of another pair's prompt"),
    MetricSpec("semantic_duplicate_share",
               "share of pairs whose prompt is a near-copy of another pair's prompt that exact string "
               "matching misses (case/whitespace variants and paraphrases)"),
    MetricSpec("n_near_duplicate_pairs",
               "pairs whose prompt is a near-duplicate of another pair's and whose two responses are "
               "near-identical too (a repeated comparison)"),
    MetricSpec("n_reversed_duplicate_pairs",
               "near-duplicate pairs whose preferred response is the other one's rejected response"),
    MetricSpec("target_uncovered_share",
               "share of target prompts in uncovered regions: fewer than uncovered_ratio times the expected "
               "share of preference prompts among their knn nearest neighbours"),
    MetricSpec("target_mean_nn_similarity",
               "mean cosine similarity of a target prompt to its nearest preference prompt"),
    MetricSpec("n_target_prompts", "number of distinct target prompts"),
    MetricSpec("n_uncovered_target_clusters",
               "target clusters where at least half the prompts are uncovered"),
    MetricSpec("unneeded_pair_share",
               "share of pairs in preference clusters that are no target prompt's nearest neighbour "
               "(topics the target never asks about)"),
)

Embedder = Callable[[list[str]], np.ndarray]
MAX_TABLE_ROWS = 1000


def analyze_coverage(table: pd.DataFrame, *, embedding_model: str | None = None,
                     target: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                     seed: int = 0, similarity_threshold: float = 0.9,
                     response_threshold: float = 0.9, n_clusters: int | None = None,
                     knn: int = 10, uncovered_ratio: float = 0.5, n_examples: int = 3,
                     max_map_points: int = 3000, embedder: Embedder | None = None,
                     engine: Any = None, pairs: pd.DataFrame | None = None) -> AnalyzerResult:
    """Topics, near-duplicates and (given a target) coverage gaps of the prompts.

    Parameters
    ----------
    table:
        Canonical pair table.
    pairs:
        ``to_pairs(table)`` when the caller has it (:func:`prefaudit.audit.audit` collapses the
        table once for all analyzers); None: collapsed here.
    embedding_model:
        Local sentence-transformers folder or hub id; None for all-MiniLM-L6-v2.
    target:
        Prompts the trained model must serve (an eval set, production prompts); each entry
        counts once, repeated entries weigh more. None skips the target part.
    cache_dir:
        Embedding cache root (default ``$PREFAUDIT_CACHE`` or ``~/.cache/prefaudit``).
    seed:
        Seed of k-means, PCA and the map subsample.
    similarity_threshold:
        Cosine similarity from which two different prompts are semantic near-duplicates.
    response_threshold:
        Word-set Jaccard similarity from which two responses count as near-identical.
    n_clusters:
        Number of prompt clusters; None applies the rule round(sqrt(n_unique / 2)) in [2, 50].
    knn, uncovered_ratio:
        The uncovered rule for target prompts (see the module docstring).
    n_examples:
        Central example prompts shown per cluster.
    max_map_points:
        Points in the 2-D map (seeded subsample beyond this).
    embedder:
        Replaces the sentence-transformers model: a function from a list of texts to unit
        vectors (for tests and custom models).
    engine:
        Where the embedding pass runs: None / ``"local"``, or ``"ray"`` / an
        :class:`~prefaudit.scoring.engines.Engine`; the vectors are the same.
    """
    _check_params(similarity_threshold, response_threshold, knn, uncovered_ratio, n_clusters)
    res = AnalyzerResult(analyzer="coverage")
    model_name = "custom embedder" if embedder is not None else (embedding_model or "all-MiniLM-L6-v2")
    res.params = {"embedding_model": model_name, "seed": seed,
                  "similarity_threshold": similarity_threshold, "response_threshold": response_threshold,
                  "k_rule": "n_clusters" if n_clusters else "round(sqrt(n_unique_prompts / 2)) in [2, 50]",
                  "knn": knn, "uncovered_ratio": uncovered_ratio, "map": "PCA (2 components)",
                  "max_map_points": max_map_points}
    if embedder is None:
        def embedder(texts: list[str]) -> np.ndarray:
            from prefaudit.scoring.embed import embed, shards_discarded

            before = shards_discarded()
            vectors = embed(texts, embedding_model, cache_dir=cache_dir, engine=engine)
            if shards_discarded() > before:
                res.notes.append(f"{shards_discarded() - before} damaged shard(s) of the embedding cache "
                                 "were discarded and their texts embedded again (the numbers are a clean "
                                 "run's).")
            return vectors

    pairs = to_pairs(table) if pairs is None else pairs
    target_list = _check_target(target)
    if len(pairs) == 0:
        res.notes.append("the table has no pairs; coverage was not measured")
        _add_target_none(res, "the table has no pairs: target coverage was not measured")
        return res
    codes, uniques = pd.factorize(pairs["prompt"], sort=False)
    prompts = [str(p) for p in uniques]
    vectors = _unit(embedder(prompts))
    pair_ids = pairs["pair_id"].astype(str).to_numpy()

    labels = _clusters(res, prompts, codes, vectors, n_clusters, seed, n_examples)
    res.pair_data = pd.DataFrame({"cluster": labels[codes].astype(int)},
                                 index=pd.Index(pair_ids, name="pair_id"))
    _near_duplicates(res, pairs, pair_ids, codes, prompts, vectors, similarity_threshold, response_threshold,
                     seed)
    t_vectors, t_uncovered = None, None
    if target_list is None:
        _add_target_none(res, "no target prompt set given (--target): target coverage was not measured")
    else:
        t_vectors, t_uncovered = _target(res, target_list, embedder, prompts, vectors, labels, codes,
                                         knn, uncovered_ratio, seed, n_examples, n_clusters)
    res.add_figure("map", _map(vectors, labels, t_vectors, t_uncovered, seed, max_map_points))
    return res


def _check_params(similarity_threshold: float, response_threshold: float, knn: int,
                  uncovered_ratio: float, n_clusters: int | None) -> None:
    if not 0.0 < similarity_threshold <= 1.0:
        raise ConfigError(f"coverage: similarity_threshold must be in (0, 1], got {similarity_threshold}")
    if not 0.0 < response_threshold <= 1.0:
        raise ConfigError(f"coverage: response_threshold must be in (0, 1], got {response_threshold}")
    if knn < 1:
        raise ConfigError(f"coverage: knn must be >= 1, got {knn}")
    if not 0.0 < uncovered_ratio <= 1.0:
        raise ConfigError(f"coverage: uncovered_ratio must be in (0, 1], got {uncovered_ratio}")
    if n_clusters is not None and n_clusters < 1:
        raise ConfigError(f"coverage: n_clusters must be >= 1, got {n_clusters}")


def _check_target(target: Sequence[str] | None) -> list[str] | None:
    if target is None:
        return None
    if isinstance(target, str):
        raise ConfigError("coverage: target must be a list of prompts, not one string "
                          "(use prefaudit.loaders.prompts.load_prompts(path) for a file)")
    out = list(target)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ConfigError(f"coverage: target prompt {i} is {type(t).__name__}, expected text")
    out = [t for t in out if t.strip()]
    if not out:
        raise ConfigError("coverage: the target prompt set is empty")
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _clusters(res: AnalyzerResult, prompts: list[str], codes: np.ndarray, vectors: np.ndarray,
              n_clusters: int | None, seed: int, n_examples: int) -> np.ndarray:
    n = len(prompts)
    k = min(n_clusters or default_k(n), n)
    labels, centroids = (kmeans(vectors, k, seed) if k > 1
                         else (np.zeros(n, dtype=np.int64), vectors.mean(0)[None]))
    res.params["n_clusters"] = int(k)
    pair_counts = np.bincount(labels[codes], minlength=k)
    share = pair_counts / pair_counts.sum()
    terms = ctfidf_labels(prompts, labels, k)
    central = central_examples(vectors, labels, centroids, n_examples)
    res.tables["clusters"] = pd.DataFrame({
        "cluster": np.arange(k), "label": terms,
        "n_prompts": np.bincount(labels, minlength=k), "n_pairs": pair_counts, "pair_share": share,
        "examples": [" | ".join(shorten(prompts[i]) for i in idx) for idx in central],
    })
    nz = share[share > 0]
    res.add_metric("n_clusters", k)
    res.add_metric("effective_clusters", float(np.exp(-(nz * np.log(nz)).sum())))
    res.add_metric("largest_cluster_share", float(share.max()))
    res.add_metric("n_unique_prompts", int(normalize_text(prompts).nunique()))
    res.add_figure("cluster_shares", Bars(labels=[f"{c}: {t}" for c, t in enumerate(terms)],
                                          values={"pair_share": share}))
    return labels


def _near_duplicates(res: AnalyzerResult, pairs: pd.DataFrame, pair_ids: np.ndarray, codes: np.ndarray,
                     prompts: list[str], vectors: np.ndarray, threshold: float,
                     response_threshold: float, seed: int) -> None:
    dups, component = prompt_duplicates(pair_ids, codes, prompts, vectors, threshold, seed=seed)
    pdups = pair_duplicates(pairs.assign(pair_id=pair_ids), codes, prompts, component, vectors,
                            response_threshold)
    n_pairs = len(pair_ids)
    res.add_metric("near_duplicate_share", len(dups) / n_pairs)
    by_kind = dups["kind"].value_counts()
    res.add_metric("semantic_duplicate_share",
                   (by_kind.get("semantic", 0) + by_kind.get("normalised", 0)) / n_pairs)
    res.add_metric("n_near_duplicate_pairs", len(pdups))
    res.add_metric("n_reversed_duplicate_pairs", int((pdups["labels"] == "reversed").sum()))
    prompt_flags = make_flags(
        dups["pair_id"], "near_duplicate_prompt", dups["similarity"].to_numpy(),
        [f"{k} duplicate of pair {o}'s prompt (cosine {s:.3f}): {shorten(t, 100)!r}"
         for k, o, s, t in zip(dups["kind"], dups["other_pair_id"], dups["similarity"], dups["other_prompt"],
                               strict=True)])
    pair_flags = make_flags(
        pdups["pair_id"], "near_duplicate_pair", pdups["similarity"].to_numpy(),
        [f"repeats pair {o}: {k} duplicate prompt (cosine {s:.3f}) and near-identical responses; "
         f"labels {lab}" for o, k, s, lab in zip(pdups["other_pair_id"], pdups["kind"], pdups["similarity"],
                                                 pdups["labels"], strict=True)])
    res.pair_flags = concat_flags([res.pair_flags, prompt_flags, pair_flags])
    shown = dups.assign(kind_rank=dups["kind"].map({"exact": 0, "normalised": 1, "semantic": 2}))
    shown = shown.sort_values(["kind_rank", "similarity", "pair_id"], ascending=[False, False, True],
                              kind="mergesort").drop(columns="kind_rank")
    shown = shown.merge(pdups[["pair_id", "labels"]].rename(columns={"labels": "duplicate_pair_labels"}),
                        on="pair_id", how="left")
    if len(shown) > MAX_TABLE_ROWS:
        res.notes.append(f"near-duplicates table shows {MAX_TABLE_ROWS} of {len(shown)} rows "
                         "(semantic first); all are in the pair flags")
    res.tables["near_duplicates"] = shown.head(MAX_TABLE_ROWS).reset_index(drop=True)


def _add_target_none(res: AnalyzerResult, note: str) -> None:
    res.add_metric("target_uncovered_share", None)
    res.notes.append(note)


def _target(res: AnalyzerResult, target: list[str], embedder: Embedder, prompts: list[str],
            vectors: np.ndarray, labels: np.ndarray, codes: np.ndarray, knn: int, uncovered_ratio: float,
            seed: int, n_examples: int, n_clusters: int | None) -> tuple[np.ndarray, np.ndarray]:
    t_codes, t_uniques = pd.factorize(pd.Series(target), sort=False)
    t_prompts = [str(t) for t in t_uniques]
    weight = np.bincount(t_codes, minlength=len(t_prompts)).astype(np.float64)
    tv = _unit(embedder(t_prompts))
    n_p, n_t = len(vectors), len(tv)
    nn_idx, nn_sim = top_k(tv, vectors, 1, seed=seed)
    nn_idx, nn_sim = nn_idx[:, 0], nn_sim[:, 0].astype(np.float64)
    both = np.vstack([vectors, tv])
    nb_idx, _ = top_k(tv, both, knn, self_offset=n_p, seed=seed)
    valid = nb_idx >= 0
    pref_share = ((nb_idx < n_p) & valid).sum(1) / np.maximum(valid.sum(1), 1)
    expected = n_p / max(n_p + n_t - 1, 1)
    ratio = pref_share / expected
    uncovered = ratio < uncovered_ratio
    w = weight / weight.sum()
    res.add_metric("target_uncovered_share", float(w[uncovered].sum()))
    res.add_metric("target_mean_nn_similarity", float(w @ nn_sim))
    res.add_metric("n_target_prompts", n_t)

    k = min(n_clusters or default_k(n_t), n_t)
    t_labels, t_centroids = (kmeans(tv, k, seed) if k > 1
                             else (np.zeros(n_t, dtype=np.int64), tv.mean(0)[None]))
    central = central_examples(tv, t_labels, t_centroids, n_examples)
    terms = ctfidf_labels(t_prompts, t_labels, k)
    rows = []
    for c in range(k):
        m = t_labels == c
        cw = weight[m]
        worst = np.flatnonzero(m)[np.lexsort((np.flatnonzero(m), nn_sim[m]))[0]]
        rows.append({"cluster": c, "label": terms[c], "n_prompts": int(m.sum()),
                     "target_share": float(cw.sum() / weight.sum()),
                     "mean_nn_similarity": float(cw @ nn_sim[m] / cw.sum()),
                     "uncovered_share": float(cw @ uncovered[m] / cw.sum()),
                     "examples": " | ".join(shorten(t_prompts[i]) for i in central[c]),
                     "least_covered": shorten(t_prompts[worst]),
                     "nearest_preference_prompt": shorten(prompts[nn_idx[worst]])})
    tclusters = pd.DataFrame(rows).sort_values(["mean_nn_similarity", "cluster"], kind="mergesort")
    res.tables["target_clusters"] = tclusters.reset_index(drop=True)
    unc = tclusters[tclusters["uncovered_share"] >= 0.5].reset_index(drop=True)
    res.tables["uncovered_target_clusters"] = unc
    res.add_metric("n_uncovered_target_clusters", len(unc))

    needed = np.bincount(labels[nn_idx], weights=weight, minlength=len(res.tables["clusters"]))
    clusters = res.tables["clusters"]
    clusters["target_nn_share"] = needed / weight.sum()
    unneeded = clusters[needed == 0]
    res.tables["unneeded_preference_clusters"] = unneeded.reset_index(drop=True)
    res.add_metric("unneeded_pair_share", float(unneeded["pair_share"].sum()))
    order = np.lexsort((np.arange(n_t), nn_sim, ratio))
    shown = order[uncovered[order]]
    res.tables["uncovered_target_prompts"] = pd.DataFrame({
        "prompt": [t_prompts[i] for i in shown[:MAX_TABLE_ROWS]],
        "nn_similarity": nn_sim[shown[:MAX_TABLE_ROWS]],
        "preference_neighbour_ratio": ratio[shown[:MAX_TABLE_ROWS]],
        "nearest_preference_prompt": [shorten(prompts[nn_idx[i]]) for i in shown[:MAX_TABLE_ROWS]],
    })
    edges = np.linspace(min(0.0, float(np.floor(nn_sim.min() * 10) / 10)), 1.0, 21)
    res.add_figure("target_nn_similarity", Histogram(
        edges=edges, counts={"covered": np.histogram(nn_sim[~uncovered], edges)[0],
                             "uncovered": np.histogram(nn_sim[uncovered], edges)[0]},
        xlabel="cosine similarity of a target prompt to its nearest preference prompt"))
    if uncovered.any():
        res.notes.append(f"{int(uncovered.sum())} of {n_t} distinct target prompts lie in regions the "
                         f"preference data does not cover; see uncovered_target_clusters")
    return tv, uncovered


def _map(vectors: np.ndarray, labels: np.ndarray, t_vectors: np.ndarray | None,
         t_uncovered: np.ndarray | None, seed: int, max_points: int) -> Scatter:
    """Prompts on their first two principal components: preference prompts grouped by cluster,
    target prompts by whether they are covered."""
    groups = [f"cluster {c}" for c in labels.tolist()]
    allv = vectors
    if t_vectors is not None and t_uncovered is not None:
        allv = np.vstack([vectors, t_vectors])
        groups += ["target, uncovered" if u else "target, covered" for u in t_uncovered.tolist()]
    if len(allv) < 3:
        return Scatter(x=[], y=[], groups=[])
    rng = np.random.default_rng(seed)
    keep = (np.sort(rng.choice(len(allv), max_points, replace=False)) if len(allv) > max_points
            else np.arange(len(allv)))
    xy = PCA(n_components=2, random_state=seed).fit_transform(allv[keep])
    return Scatter(x=np.round(xy[:, 0], 4), y=np.round(xy[:, 1], 4), groups=[groups[i] for i in keep],
                   xlabel="principal component 1", ylabel="principal component 2")
