"""Prompt clusters of the evaluated pairs, the coverage analyzer's way.

The same steps as :mod:`prefaudit.analyzers.coverage`'s topics: sentence embeddings of the
unique prompts (:func:`prefaudit.scoring.embed.embed`, cached), seeded k-means with
:func:`~prefaudit.similarity.prompt_clusters.default_k` clusters and c-TF-IDF labels, so a
cluster here reads like one in the audit report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prefaudit.similarity.prompt_clusters import ctfidf_labels, default_k, kmeans


def pair_clusters(pairs: pd.DataFrame, *, embedding_model: str | None = None,
                  cache_dir: str | Path | None = None,
                  seed: int = 0) -> tuple[pd.Series, dict[int, str]] | None:
    """``(cluster per pair_id, label per cluster)``, or None with fewer than 2 unique prompts."""
    from prefaudit.scoring.embed import embed

    prompts = list(dict.fromkeys(pairs["prompt"]))
    if len(prompts) < 2:
        return None
    vectors = embed(prompts, embedding_model, cache_dir=cache_dir, progress=False)
    k = default_k(len(prompts))
    labels, _ = kmeans(np.asarray(vectors, dtype=np.float64), k, seed)
    names = ctfidf_labels(prompts, labels, k)
    of_prompt = dict(zip(prompts, labels.tolist(), strict=True))
    series = pd.Series([of_prompt[p] for p in pairs["prompt"]], index=pairs["pair_id"].astype(str),
                       name="cluster")
    return series, dict(enumerate(names))
