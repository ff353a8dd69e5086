"""Test support: tiny models built in code, and the ``prefaudit`` command run from a test.

:func:`tiny_causal_lm` returns a randomly initialised Llama (about 120 k parameters) with a
byte-level BPE tokenizer trained in-process, which round-trips any UTF-8 text and carries a
ChatML-style chat template, so the whole log-prob and DPO path runs in milliseconds.
:func:`run_cli` runs the command in a subprocess, :func:`cli_in_process` in this one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: A minimal ChatML template (the format of SmolLM2-Instruct), for conversational tests.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_level_tokenizer(corpus: Iterable[str] = ("hello world",), vocab_size: int = 300) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus`` (any UTF-8 text encodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<pad>", "<eos>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(list(corpus), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>",
                                  bos_token="<eos>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_causal_lm(corpus: Iterable[str] = ("The assistant answers the user helpfully and safely.",),
                   seed: int = 0, max_positions: int = 1024) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a 2-layer, 64-wide random Llama in eval mode and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_level_tokenizer(list(corpus) * 10)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    model.eval()
    model.requires_grad_(False)
    return model, tok


def run_cli(*args: object, cwd: str | Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m prefaudit.cli ARGS`` in a subprocess, text output captured."""
    return subprocess.run([sys.executable, "-m", "prefaudit.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def cli_in_process(capsys: Any, *args: object) -> tuple[int, str, str]:
    """``prefaudit ARGS`` in this process (``capsys`` is pytest's fixture): exit code, stdout, stderr."""
    from prefaudit.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err

