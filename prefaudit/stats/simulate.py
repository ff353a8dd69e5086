"""Synthetic multi-annotator judgements with a planted true label, for checking agreement estimates.

Like scikit-learn's ``make_*`` generators: the truth is known, so one can check that
Dawid–Skene recovers annotator accuracies, that consensus labels beat the majority vote, and
that the flip-rate estimate matches the planted error share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prefaudit.errors import ConfigError
from prefaudit.schema import LABEL_A, LABEL_B, LABEL_TIE


def simulate_judgements(n_pairs: int, accuracies: Sequence[float], *, missing: float = 0.1,
                        tie_rate: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A canonical judgement table and the true label of every pair.

    Each pair's true label is A or B with equal probability, or a tie with ``tie_rate``.
    Annotator ``j`` (named ``ann1``, ``ann2``, ...) reports the truth with probability
    ``accuracies[j]`` and otherwise one of the other labels in use, uniformly. Each label is
    missing with probability ``missing``, but every pair keeps at least one.

    Returns ``(table, truth)``; ``truth`` is indexed by ``pair_id`` and coded like
    :func:`prefaudit.schema.label_matrix` (0 = response A, the text that sorts first, 1 = the
    other, 2 = tie), so it compares directly with the agreement analyzer's consensus labels.
    """
    acc = np.asarray(accuracies, dtype="float64")
    if n_pairs < 1 or acc.ndim != 1 or len(acc) < 1 or not ((acc >= 0) & (acc <= 1)).all():
        raise ConfigError("simulate_judgements needs n_pairs >= 1 and accuracies in [0, 1]")
    if not (0 <= missing < 1 and 0 <= tie_rate < 1):
        raise ConfigError("simulate_judgements needs 0 <= missing < 1 and 0 <= tie_rate < 1")
    rng = np.random.default_rng(seed)
    n_ann = len(acc)
    classes = np.array([LABEL_A, LABEL_B, LABEL_TIE] if tie_rate > 0 else [LABEL_A, LABEL_B])
    truth = np.where(rng.random(n_pairs) < tie_rate, LABEL_TIE, rng.integers(0, 2, n_pairs))
    correct = rng.random((n_pairs, n_ann)) < acc[None, :]
    offset = rng.integers(1, len(classes), (n_pairs, n_ann))
    position = np.searchsorted(classes, truth)[:, None]
    labels = np.where(correct, truth[:, None], classes[(position + offset) % len(classes)])
    judged = rng.random((n_pairs, n_ann)) >= missing
    judged[np.arange(n_pairs), rng.integers(0, n_ann, n_pairs)] |= ~judged.any(axis=1)

    pair_idx, ann_idx = np.nonzero(judged)
    label = labels[pair_idx, ann_idx]
    pair_ids = np.array([f"sim-{i:06d}" for i in range(n_pairs)], dtype=object)
    text_a = np.array([f"response A to prompt {i}" for i in range(n_pairs)], dtype=object)
    text_b = np.array([f"response B to prompt {i}" for i in range(n_pairs)], dtype=object)
    prompts = np.array([f"prompt {i}" for i in range(n_pairs)], dtype=object)
    prefer_b = label == LABEL_B
    table = pd.DataFrame({
        "pair_id": pair_ids[pair_idx],
        "prompt": prompts[pair_idx],
        "chosen": np.where(prefer_b, text_b[pair_idx], text_a[pair_idx]),
        "rejected": np.where(prefer_b, text_a[pair_idx], text_b[pair_idx]),
        "annotator": pd.array([f"ann{j + 1}" for j in ann_idx], dtype="string"),
        "tie": label == LABEL_TIE,
        "strength": np.nan,
        "source": "simulated",
    })
    # "response A ..." sorts before "response B ...", so text_a is response A of label_matrix
    return table, pd.Series(truth, index=pd.Index(pair_ids, name="pair_id"), name="truth")
