"""Gated DPO training: audit and gate first, then train with the audit's findings."""

from prefaudit.train.dpo import TrainConfig, preference_metrics
from prefaudit.train.losses import LOSSES, preference_loss
from prefaudit.train.run import GateRefused, TrainRun, train_dpo

__all__ = ["LOSSES", "GateRefused", "TrainConfig", "TrainRun", "preference_loss", "preference_metrics",
           "train_dpo"]
