"""Load the trained policy and its reference, and check that they share one tokenizer.

The policy may be

- a model folder (``config.json``; what ``prefaudit train`` writes without ``--lora``);
- a LoRA adapter folder (``adapter_config.json``; what ``prefaudit train --lora`` writes): the
  adapter is applied to a fresh copy of the reference and merged, so the policy is a plain
  model scored exactly like the reference.

Without ``reference``, a folder written by ``prefaudit train`` names its own reference (the
``model`` option recorded in ``prefaudit_train.json``). Both models go to the device and dtype
:func:`prefaudit.scoring.models.load_reference` picks, in eval mode.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefaudit.errors import ConfigError
from prefaudit.scoring.models import load_reference

TRAIN_METADATA = "prefaudit_train.json"
ADAPTER_CONFIG = "adapter_config.json"


def load_policy_and_reference(policy: str | Path, reference: str | None = None, *,
                              cache_dir: str | Path | None = None) -> tuple[Any, Any, Any]:
    """``(policy_model, reference_model, tokenizer)`` for ``prefaudit evaluate``.

    Raises :class:`~prefaudit.errors.ConfigError` (one line) for a missing folder, a folder that
    is neither a model nor an adapter, an adapter that cannot be applied, or a policy whose
    tokenizer differs from the reference's.
    """
    where = Path(policy).expanduser()
    if not where.is_dir():
        raise ConfigError(f"--policy-model {where}: no such folder (expected a model folder, a LoRA adapter "
                          "folder or the output of `prefaudit train`)")
    is_adapter = (where / ADAPTER_CONFIG).is_file()
    if not is_adapter and not (where / "config.json").is_file():
        raise ConfigError(f"--policy-model {where}: neither a model folder (config.json) nor a LoRA adapter "
                          f"folder ({ADAPTER_CONFIG})")
    reference = reference or _recorded_reference(where)
    with _quiet_loading():
        ref_model, ref_tok = load_reference(reference, cache_dir=cache_dir)
        tok = _policy_tokenizer(where, ref_tok, required=not is_adapter)
        check_same_tokenizer(tok, ref_tok, policy=str(where), reference=reference)
        model = _merged_adapter(where, reference, cache_dir) if is_adapter else _load_model(where, ref_model)
    return model, ref_model, ref_tok


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No transformers progress bars while loading (stderr keeps one line per error)."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def check_same_tokenizer(policy_tok: Any, reference_tok: Any, *, policy: str = "policy",
                         reference: str = "reference") -> None:
    """Raise :class:`ConfigError` unless both tokenizers map the same strings to the same ids.

    Log-probabilities of the two models are compared token by token, so the vocabulary and
    the BOS/EOS ids must be identical (a padding token may differ: it is never scored).
    """
    same_vocab = policy_tok.get_vocab() == reference_tok.get_vocab()
    specials = [(name, getattr(policy_tok, name), getattr(reference_tok, name))
                for name in ("bos_token_id", "eos_token_id")]
    if not same_vocab:
        raise ConfigError(f"--policy-model {policy}: its tokenizer differs from the reference's "
                          f"({reference}): "
                          f"{len(policy_tok.get_vocab())} vs {len(reference_tok.get_vocab())} tokens, "
                          "different vocabularies; evaluate a policy trained from this reference")
    for name, a, b in specials:
        if a != b:
            raise ConfigError(f"--policy-model {policy}: its tokenizer's {name} is {a}, the reference's "
                              f"({reference}) is {b}; evaluate a policy trained from this reference")


def _recorded_reference(folder: Path) -> str:
    meta = folder / TRAIN_METADATA
    if not meta.is_file():
        raise ConfigError(f"--reference-model is needed: {folder} has no {TRAIN_METADATA} naming the model "
                          "it was trained from")
    try:
        model = json.loads(meta.read_text(encoding="utf-8"))["options"]["model"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{meta}: no options.model entry naming the reference; "
                          "pass --reference-model") from None
    if not isinstance(model, str):
        raise ConfigError(f"{meta}: the policy was trained from an in-memory model; pass --reference-model")
    return model


def _load_model(where: Path, like: Any) -> Any:
    """The policy folder as a frozen causal LM on ``like``'s device and dtype."""
    from prefaudit.scoring.models import load_causal_lm

    param = next(like.parameters())
    model, _ = load_causal_lm(str(where), device=str(param.device),
                              dtype=str(param.dtype).removeprefix("torch."), role="--policy-model")
    model.eval()
    model.requires_grad_(False)
    return model


def _merged_adapter(where: Path, reference: str, cache_dir: str | Path | None) -> Any:
    from peft import PeftModel

    base, _ = load_reference(reference, cache_dir=cache_dir)  # a fresh copy: merging changes its weights
    try:
        model = PeftModel.from_pretrained(base, str(where)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"--policy-model {where}: cannot apply the LoRA adapter to the reference "
                          f"{reference!r} ({str(exc).splitlines()[0]})") from None
    model.eval()
    model.requires_grad_(False)
    return model


def _policy_tokenizer(where: Path, reference_tok: Any, *, required: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(where), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        if required:
            raise ConfigError(f"--policy-model {where}: no tokenizer saved with the model "
                              f"({str(exc).splitlines()[0]})") from None
        return reference_tok  # an adapter folder without a tokenizer uses the reference's
