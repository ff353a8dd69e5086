"""Length-balanced resampling: remove the "longer answer wins" signal from a preference set.

Pairs are binned by how different their two responses are in length (ratio of character
counts, :data:`RATIO_EDGES`). Within each bin, the pairs whose chosen response is the longer
one and those whose chosen response is the shorter one are made equally numerous — by
dropping a seeded random subset of the larger group (:func:`length_balanced_sample`) or by
down-weighting it (:func:`length_balanced_weights`). Afterwards, knowing which response is
longer (to within the bin) no longer predicts the label. Tied pairs and pairs of equal length
carry no length direction and are kept with weight 1.

The training step calls these two functions; the length analyzer uses the same helpers to
report what balancing would change and cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prefaudit.schema import to_pairs, validate

#: Bin edges on the length ratio longer / shorter (characters + 1): 1-1.1x, 1.1-1.25x, ... >4x.
RATIO_EDGES: tuple[float, ...] = (1.0, 1.1, 1.25, 1.5, 2.0, 4.0, float("inf"))


def log_length_ratio(chosen_len: np.ndarray, rejected_len: np.ndarray) -> np.ndarray:
    """log2((1 + chosen length) / (1 + rejected length)): +1 means chosen is twice as long."""
    c = np.asarray(chosen_len, dtype=float)
    r = np.asarray(rejected_len, dtype=float)
    return np.log2(1.0 + c) - np.log2(1.0 + r)


def ratio_bin(log_ratio: np.ndarray) -> np.ndarray:
    """Bin index (0 = up to 1.1x, ...) of ``|log_ratio|`` in :data:`RATIO_EDGES`; -1 when equal."""
    a = np.abs(np.asarray(log_ratio, dtype=float))
    inner = np.log2(np.asarray(RATIO_EDGES[1:-1]))
    return np.where(a == 0, -1, np.searchsorted(inner, a, side="left"))


def balanced_weights(log_ratio: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Per-pair weights that make the weighted chosen-longer share exactly 0.5 in every bin.

    In a bin with ``L`` chosen-longer and ``S`` chosen-shorter pairs, the larger group gets
    weight ``min(L, S) / max(L, S)`` (0 when the other group is empty), the smaller weight 1.
    """
    lr = np.asarray(log_ratio, dtype=float)
    tie = np.asarray(tie, dtype=bool)
    w = np.ones(len(lr))
    bins = ratio_bin(lr)
    for b in np.unique(bins[(bins >= 0) & ~tie]):
        in_bin = (bins == b) & ~tie
        longer, shorter = in_bin & (lr > 0), in_bin & (lr < 0)
        n_l, n_s = int(longer.sum()), int(shorter.sum())
        if n_l > n_s:
            w[longer] = n_s / n_l
        elif n_s > n_l:
            w[shorter] = n_l / n_s
    return w


def balanced_keep(log_ratio: np.ndarray, tie: np.ndarray, seed: int = 0) -> np.ndarray:
    """Boolean mask of the pairs kept by seeded length-balanced subsampling (same bins)."""
    lr = np.asarray(log_ratio, dtype=float)
    tie = np.asarray(tie, dtype=bool)
    keep = np.ones(len(lr), dtype=bool)
    rng = np.random.default_rng(seed)
    bins = ratio_bin(lr)
    for b in np.unique(bins[(bins >= 0) & ~tie]):
        in_bin = (bins == b) & ~tie
        longer = np.flatnonzero(in_bin & (lr > 0))
        shorter = np.flatnonzero(in_bin & (lr < 0))
        big, small = (longer, shorter) if len(longer) > len(shorter) else (shorter, longer)
        drop = rng.choice(big, size=len(big) - len(small), replace=False)
        keep[drop] = False
    return keep


def _pair_ratios(table: pd.DataFrame) -> pd.DataFrame:
    pairs = to_pairs(validate(table))
    lr = log_length_ratio(pairs["chosen"].str.len().to_numpy(), pairs["rejected"].str.len().to_numpy())
    return pd.DataFrame({"log_ratio": lr, "tie": pairs["tie"].to_numpy(dtype=bool)},
                        index=pd.Index(pairs["pair_id"], name="pair_id"))


def length_balanced_weights(table: pd.DataFrame) -> pd.Series:
    """Training weight of each pair (indexed by ``pair_id``) that removes the length signal.

    Multi-annotator tables are oriented by majority (:func:`prefaudit.schema.to_pairs`).
    Weights are in [0, 1]; see :func:`balanced_weights`.
    """
    r = _pair_ratios(table)
    return pd.Series(balanced_weights(r["log_ratio"].to_numpy(), r["tie"].to_numpy()),
                     index=r.index, name="length_weight")


def length_balanced_sample(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The rows of ``table`` whose pair survives seeded length-balanced subsampling.

    All judgement rows of a kept pair are kept, in their original order; the same ``seed``
    keeps the same pairs.
    """
    r = _pair_ratios(table)
    kept = r.index[balanced_keep(r["log_ratio"].to_numpy(), r["tie"].to_numpy(), seed=seed)]
    return table[table["pair_id"].isin(kept)].reset_index(drop=True)
