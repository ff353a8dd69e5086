"""Process-wide settings prefaudit relies on, each stated once: the cache folder and offline mode.

prefaudit never downloads a model: :func:`stay_offline` (run when ``prefaudit`` is imported)
sets ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` unless the caller set them already.
Embeddings, log-probs and converted models are cached under :func:`default_cache_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the cache folder.
CACHE_ENV = "PREFAUDIT_CACHE"
#: Environment variables that keep Hugging Face libraries off the network.
OFFLINE_VARIABLES: tuple[str, ...] = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def default_cache_dir() -> Path:
    """``$PREFAUDIT_CACHE`` if set, else ``~/.cache/prefaudit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prefaudit"


def cache_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` (``~`` expanded) when given, else :func:`default_cache_dir`."""
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def stay_offline() -> None:
    """Set the offline variables to 1 unless they are set (call before transformers is imported)."""
    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")
