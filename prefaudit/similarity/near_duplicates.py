"""Near-duplicate prompts and pairs, each with the kind of duplication that explains it.

Kinds, strongest first:

* ``exact``: two pairs have the very same prompt string;
* ``normalised``: the prompts are equal after :func:`prefaudit.text.normalize_text` (they differ
  only in case, whitespace or Unicode compatibility forms; the same rule as ``hygiene``);
* ``semantic``: the prompt embeddings have cosine similarity >= the threshold.

A *duplicate pair* additionally has near-identical responses: after that normalisation the two
responses are equal, or each has word-set Jaccard similarity >=
``response_threshold`` with its counterpart (in the same or the reversed orientation, which
tells whether the two labels agree). The semantic search is
:func:`prefaudit.similarity.neighbors.pairs_above` (FAISS).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from prefaudit.similarity.neighbors import pairs_above
from prefaudit.text import normalize_text

KIND_RANK = {"exact": 0, "normalised": 1, "semantic": 2}
#: Groups of pairs larger than this compare responses by normalised equality only.
MAX_FUZZY_GROUP = 200


def prompt_duplicates(pair_ids: np.ndarray, codes: np.ndarray, prompts: list[str],
                      vectors: np.ndarray, threshold: float, *,
                      seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """For each pair whose prompt duplicates another pair's prompt, its closest such pair.

    Parameters
    ----------
    pair_ids:
        One id per pair.
    codes:
        Index into ``prompts`` of each pair's prompt.
    prompts, vectors:
        The unique prompts and their unit embeddings.
    threshold:
        Cosine similarity from which two different prompts count as semantic duplicates.
    seed:
        Seed of the neighbour index (used beyond its exact size).

    Returns
    -------
    (table, component)
        ``table`` has columns pair_id, other_pair_id, kind, similarity, prompt, other_prompt;
        ``component`` gives each unique prompt its near-duplicate group (connected
        components of normalised and semantic links).
    """
    n = len(prompts)
    keys = normalize_text(prompts)
    rep = keys.groupby(keys, sort=False).ngroup().to_numpy()
    first_of_rep = pd.Series(np.arange(n)).groupby(rep).first().to_numpy()
    reps = first_of_rep
    i, j, s = pairs_above(vectors[reps], threshold, seed=seed)
    gi, gj = reps[i], reps[j]
    links_i = np.concatenate([gi, np.arange(n)])
    links_j = np.concatenate([gj, first_of_rep[rep]])
    graph = coo_matrix((np.ones(len(links_i)), (links_i, links_j)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    # best partner of each unique prompt: a normalised twin, else the most similar semantic one
    partner = np.full(n, -1, dtype=np.int64)
    kind = np.full(n, "", dtype=object)
    sim = np.zeros(n, dtype=np.float64)
    best_sem = np.full(len(reps), -1, dtype=np.int64)
    best_sim = np.full(len(reps), -np.inf)
    for a, b, v in zip(np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([s, s]), strict=True):
        if v > best_sim[a] or (v == best_sim[a] and b < best_sem[a]):
            best_sem[a], best_sim[a] = b, v
    members = pd.Series(np.arange(n)).groupby(rep).agg(list)
    for r, group in members.items():
        if len(group) > 1:
            for u in group:
                other = group[0] if u != group[0] else group[1]
                partner[u], kind[u] = other, "normalised"
                sim[u] = float(vectors[u] @ vectors[other])
        elif best_sem[r] >= 0:
            u = group[0]
            partner[u], kind[u], sim[u] = reps[best_sem[r]], "semantic", float(best_sim[r])

    first_pair = pd.Series(pair_ids).groupby(codes).agg(list)
    rows = []
    for p, u in zip(pair_ids, codes, strict=True):
        same = first_pair[u]
        if len(same) > 1:
            other = same[0] if same[0] != p else same[1]
            rows.append((p, other, "exact", 1.0, prompts[u], prompts[u]))
        elif partner[u] >= 0:
            v = partner[u]
            rows.append((p, first_pair[v][0], kind[u], min(sim[u], 1.0), prompts[u], prompts[v]))
    table = pd.DataFrame(rows, columns=["pair_id", "other_pair_id", "kind", "similarity",
                                        "prompt", "other_prompt"])
    return table, component


def pair_duplicates(pairs: pd.DataFrame, codes: np.ndarray, prompts: list[str], component: np.ndarray,
                    vectors: np.ndarray, response_threshold: float) -> pd.DataFrame:
    """Pairs whose prompt is a near-duplicate and whose responses are near-identical.

    ``pairs`` has pair_id, chosen, rejected (oriented by the majority label). Returns one
    row per duplicate pair (its earliest twin as ``other_pair_id``): pair_id, other_pair_id,
    kind (of the prompt link), similarity (of the prompts), labels ("agree" or "reversed").
    """
    chosen = normalize_text(pairs["chosen"]).tolist()
    rejected = normalize_text(pairs["rejected"]).tolist()
    prompt_keys = normalize_text(prompts).tolist()
    ids = pairs["pair_id"].to_numpy()
    comp = component[codes]
    rows = []
    for _, idx in pd.Series(np.arange(len(ids))).groupby(comp).agg(list).items():
        if len(idx) < 2:
            continue
        fuzzy = len(idx) <= MAX_FUZZY_GROUP
        words = {k: (set(chosen[k].split()), set(rejected[k].split())) for k in idx} if fuzzy else {}
        seen: dict[tuple[str, str], int] = {}
        for pos, b in enumerate(idx):
            match, relation = _earlier_twin(b, idx[:pos], chosen, rejected, words, response_threshold, seen)
            key = (chosen[b], rejected[b])
            seen.setdefault(key, b)
            if match < 0:
                continue
            ua, ub = codes[match], codes[b]
            kind = "exact" if ua == ub else (
                "normalised" if prompt_keys[ua] == prompt_keys[ub] else "semantic")
            rows.append((ids[b], ids[match], kind, min(float(vectors[ua] @ vectors[ub]), 1.0), relation))
    return pd.DataFrame(rows, columns=["pair_id", "other_pair_id", "kind", "similarity", "labels"])


def _earlier_twin(b: int, earlier: list[int], chosen: list[str], rejected: list[str],
                  words: dict[int, tuple[set[str], set[str]]], threshold: float,
                  seen: dict[tuple[str, str], int]) -> tuple[int, str]:
    if (chosen[b], rejected[b]) in seen:
        return seen[(chosen[b], rejected[b])], "agree"
    if (rejected[b], chosen[b]) in seen:
        return seen[(rejected[b], chosen[b])], "reversed"
    if not words:
        return -1, ""
    cb, rb = words[b]
    for a in earlier:
        ca, ra = words[a]
        if _jaccard(ca, cb) >= threshold and _jaccard(ra, rb) >= threshold:
            return a, "agree"
        if _jaccard(ca, rb) >= threshold and _jaccard(ra, cb) >= threshold:
            return a, "reversed"
    return -1, ""


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
