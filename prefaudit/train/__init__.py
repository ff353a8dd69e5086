"""Gated DPO training: audit and gate first, then train with the audit's findings.

The names below load on first use, so ``prefaudit.train.config`` (the options, which the
command line reads) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES: dict[str, str] = {
    "LOSSES": "prefaudit.train.config", "TrainConfig": "prefaudit.train.config",
    "preference_loss": "prefaudit.train.losses", "preference_metrics": "prefaudit.train.dpo",
    "GateRefused": "prefaudit.train.run", "TrainRun": "prefaudit.train.run",
    "train_dpo": "prefaudit.train.run",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'prefaudit.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
