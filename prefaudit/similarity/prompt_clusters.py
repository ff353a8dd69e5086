"""Seeded k-means topics of prompt embeddings, with c-TF-IDF labels and central examples.

The number of clusters follows one stated rule, :func:`default_k`: k = round(sqrt(n / 2))
for n unique prompts, kept within [2, 50] (and at most n). k-means runs with a fixed seed
and ``n_init=4``, so the same embeddings always give the same clusters.
"""

from __future__ import annotations

import re

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

MAX_K = 50
N_INIT = 4
N_TERMS = 4
#: English stop words plus the role names that rendered conversations repeat in every prompt.
STOP_WORDS = sorted(ENGLISH_STOP_WORDS | {"human", "assistant", "user", "system"})


def default_k(n: int) -> int:
    """k = round(sqrt(n / 2)) clipped to [2, 50] and to n."""
    return int(min(n, max(2, min(MAX_K, round(np.sqrt(n / 2))))))


def kmeans(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, centroids)`` of seeded k-means; clusters renumbered by decreasing size."""
    km = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(vectors)
    sizes = np.bincount(km.labels_, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[km.labels_], km.cluster_centers_[order]


def central_examples(vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                     n: int = 3) -> list[list[int]]:
    """Per cluster, the indices of its ``n`` members closest (cosine) to the centroid."""
    out = []
    for c, centre in enumerate(centroids):
        members = np.flatnonzero(labels == c)
        sims = vectors[members] @ (centre / max(np.linalg.norm(centre), 1e-12))
        out.append(members[np.lexsort((members, -sims))[:n]].tolist())
    return out


def ctfidf_labels(texts: list[str], labels: np.ndarray, k: int, n_terms: int = N_TERMS) -> list[str]:
    """A label per cluster: its top terms by class-based TF-IDF.

    Each cluster's prompts form one document; a term's weight is its frequency in the
    cluster (normalised by the cluster's word count) times log(1 + A / f), where A is the
    mean word count per cluster and f the term's frequency over all clusters. Clusters
    without any usable word get an empty label. Stop words and conversation role names
    (human, assistant, user, system) are ignored.
    """
    docs = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in range(k)]
    vec = CountVectorizer(stop_words=STOP_WORDS, token_pattern=r"(?u)\b[^\W\d_]{3,}\b", lowercase=True)
    try:
        counts = vec.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # empty vocabulary (no words of 3+ letters)
        return [""] * k
    terms = vec.get_feature_names_out()
    words = counts.sum(axis=1, keepdims=True)
    tf = counts / np.maximum(words, 1.0)
    idf = np.log1p(words.mean() / np.maximum(counts.sum(axis=0), 1.0))
    score = tf * idf
    out = []
    for row in score:
        top = [i for i in np.lexsort((terms, -row))[:n_terms] if row[i] > 0]
        out.append(", ".join(terms[i] for i in top))
    return out


def shorten(text: str, n: int = 160) -> str:
    """One-line preview of a text, at most ``n`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= n else flat[: n - 1] + "…"
