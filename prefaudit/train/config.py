"""Training options, each stated once: its default, its help text and its valid range.

:class:`TrainConfig` is the one place a training default lives (the way TRL's ``DPOConfig``
keeps its help in field metadata); ``prefaudit train`` generates its options from the fields
(:func:`cli_fields`). Values are checked when a config is built, scikit-learn style, so a bad
option is a one-line :class:`~prefaudit.errors.ConfigError` before any model loads. This module
imports no torch, so building the command line stays fast.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, fields
from typing import Any

from prefaudit.errors import ConfigError

#: Loss names (see :mod:`prefaudit.train.losses`).
LOSSES: tuple[str, ...] = ("sigmoid", "ipo", "cdpo", "robust", "length_reg", "cpo")
#: Losses trained with TRL's DPOTrainer, as its ``loss_type``.
TRL_LOSSES: dict[str, str] = {"sigmoid": "sigmoid", "ipo": "ipo", "robust": "robust"}
#: Training arithmetic :class:`TrainConfig` accepts.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
BACKENDS: tuple[str, ...] = ("auto", "trl", "own")
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval of valid numbers; None leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v: float) -> bool:
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def __str__(self) -> str:
        lo, hi = _num(self.low), _num(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {lo}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {hi}"
        return f"in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"


def _num(v: float | None) -> str:
    return "" if v is None else str(int(v)) if float(v).is_integer() else f"{v:g}"


def _option(default: Any, help: str, *, flag: str | None = "", valid: Range | tuple[str, ...] | None = None,
            loss: str | None = None) -> Any:
    """A field with its help text, command-line flag (None: not an option; "": ``--field-name``),
    valid values (a :class:`Range` or the allowed strings) and the one loss it applies to (if
    only one) in its metadata."""
    return field(default=default, metadata={"help": help, "flag": flag, "valid": valid, "loss": loss})


@dataclass(frozen=True)
class TrainConfig:
    """Training options; see each field's ``help`` (``dataclasses.fields(TrainConfig)``).

    ``precision`` is chosen here, never by TRL's default (``DPOConfig`` turns bf16 on wherever
    the hardware allows it). Raises :class:`~prefaudit.errors.ConfigError` for a value out of
    range, an unknown loss, backend or precision, a loss the chosen backend lacks, or
    ``length_reg`` without a length penalty.
    """

    loss: str = _option("sigmoid", "sigmoid (DPO), ipo, robust (rDPO), cdpo, length_reg (R-DPO) or cpo",
                        valid=LOSSES)
    beta: float = _option(0.1, "DPO beta: strength of the pull toward the reference model",
                          valid=Range(0, low_open=True))
    eps: float = _option(0.0, "label-noise (flip) rate of robust/cdpo; the CLI sets it with --label-noise",
                         flag=None, valid=Range(0, 0.5, high_open=True))
    alpha: float = _option(0.0, "length_reg: per-token length penalty of R-DPO (must be > 0 with that loss)",
                           valid=Range(0), loss="length_reg")
    nll_weight: float = _option(1.0, "cpo: weight of the likelihood term on the chosen response",
                                valid=Range(0), loss="cpo")
    learning_rate: float = _option(5e-5, "learning rate", valid=Range(0, low_open=True))
    max_steps: int = _option(100, "optimizer steps", flag="--steps", valid=Range(1))
    batch_size: int = _option(8, "pairs per step", valid=Range(1))
    max_length: int = _option(512, "tokens per prompt+response", valid=Range(1))
    seed: int = _option(0, "seed for the audit, the split and training", valid=Range(0, SEED_MAX))
    backend: str = _option("auto", "auto: TRL's DPOTrainer for sigmoid/ipo/robust, our loop otherwise; "
                                   "trl; own", valid=BACKENDS)
    precision: str = _option("fp32", "training arithmetic, recorded in prefaudit_train.json: fp32 (the "
                             "same on every machine) or bf16 (autocast; differs from fp32 in the third "
                             "decimal)", valid=PRECISIONS)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name), f.default, f.metadata["valid"])
        if self.backend == "trl" and self.loss not in TRL_LOSSES:
            raise ConfigError(f"backend 'trl': TRL's DPOTrainer has no {self.loss!r} loss; use backend 'own' "
                              "or 'auto'")
        if self.loss == "length_reg" and self.alpha == 0:
            raise ConfigError("loss 'length_reg' needs alpha > 0 (--alpha): with alpha 0 it is plain DPO")

    def resolved_backend(self) -> str:
        """``"trl"`` or ``"own"``: which loop trains this loss."""
        if self.backend == "auto":
            return "trl" if self.loss in TRL_LOSSES else "own"
        return self.backend

    def autocast(self) -> Any:
        """The autocast context the own loop trains in (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type=device, dtype=torch.bfloat16)


def flag_of(name: str) -> str | None:
    """The command-line flag of a :class:`TrainConfig` field (None when it is not an option)."""
    flag = next(f for f in fields(TrainConfig) if f.name == name).metadata["flag"]
    return flag if flag is None or flag else "--" + name.replace("_", "-")


def cli_fields() -> list[tuple[str, str, Any, str, tuple[str, ...] | None]]:
    """``(field, flag, default, help, choices)`` of every field that is a command-line option."""
    out = []
    for f in fields(TrainConfig):
        flag = flag_of(f.name)
        if flag is None:
            continue
        valid = f.metadata["valid"]
        choices = valid if isinstance(valid, tuple) else None
        where = "" if choices or valid is None else f"; {valid}"
        out.append((f.name, flag, f.default, f"{f.metadata['help']} (default {f.default}{where})", choices))
    return out


def check_options_apply(config: TrainConfig) -> None:
    """Refuse an option set away from its default for a loss it does not apply to (``--alpha``
    without ``--loss length_reg``), which would otherwise be ignored without a word."""
    for f in fields(config):
        loss, value = f.metadata["loss"], getattr(config, f.name)
        if loss is not None and config.loss != loss and value != f.default:
            raise ConfigError(f"{flag_of(f.name)} applies to --loss {loss} only, not {config.loss!r}")


def _check(name: str, value: Any, default: Any, valid: Range | tuple[str, ...] | None) -> None:
    flag = flag_of(name)
    shown = f"{name} ({flag})" if flag else name
    if isinstance(valid, tuple):
        if value not in valid:
            raise ConfigError(f"{shown}: expected one of {', '.join(valid)}, got {value!r}")
        return
    kind = int if isinstance(default, int) else float
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    a = "an integer" if kind is int else "a number"
    if not number or (kind is int and not isinstance(value, int)) or not math.isfinite(value):
        raise ConfigError(f"{shown}: expected {'an integer' if kind is int else 'a finite number'}, "
                          f"got {value!r}")
    if valid is not None and value not in valid:
        raise ConfigError(f"{shown}: expected {a} {valid}, got {value!r}")
