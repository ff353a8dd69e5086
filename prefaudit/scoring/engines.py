"""Where the model passes run: ``local`` (this process) or ``ray`` (Ray Data actors).

The two heavy passes — sentence embeddings (:func:`prefaudit.scoring.embed.embed`) and
reference log-probs (:func:`prefaudit.scoring.logprobs.score_pairs`) — decide on the driver
what is missing from their on-disk caches and hand only that work to an engine. The ``ray``
engine runs it as Ray Data ``map_batches`` over an actor pool: each actor loads its model
once (``num_gpus`` per actor when asked, CPU otherwise) and returns arrays; the driver writes
each returned batch into the same caches the local engine fills, as it arrives. So a killed
run resumes from what was written, a second audit of the same data computes nothing, and the
analyzers never know which engine ran.

Multi-node cache choice: **workers return arrays to the driver, which alone writes the
cache.** The returned arrays are small (384 floats per text, two floats per pair) next to
the model work that makes them, no shared or network filesystem is needed, and the caches
keep exactly one writer (their append-only shards and JSON lines need no locking).

Ray is an optional dependency (``pip install prefaudit[ray]``), imported only here and only
when the ``ray`` engine is used.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefaudit.errors import ConfigError

ENGINE_KINDS = ("local", "ray")


@dataclass(frozen=True)
class Engine:
    """An engine for the model passes.

    Parameters
    ----------
    kind:
        ``"local"`` (this process) or ``"ray"``.
    address:
        Ray cluster address (``"auto"``, ``"ray://host:10001"``...); None starts a local Ray
        instance with as many CPUs as the machine has (at least ``workers + 1``).
    workers:
        Actors in the pool (each loads the model once).
    gpus_per_worker:
        GPUs reserved per actor (0: CPU actors).
    """

    kind: str = "local"
    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ENGINE_KINDS:
            raise ConfigError(f"engine must be one of {', '.join(ENGINE_KINDS)}, got {self.kind!r}")
        if self.workers < 1:
            raise ConfigError(f"engine: workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"engine: gpus_per_worker must be >= 0, got {self.gpus_per_worker}")


def as_engine(engine: Engine | str | None) -> Engine:
    """``None`` or ``"local"`` -> the local engine; ``"ray"`` -> Ray with the defaults."""
    if engine is None:
        return Engine()
    if isinstance(engine, Engine):
        return engine
    if isinstance(engine, str):
        return Engine(kind=engine)
    raise ConfigError(f"engine must be an Engine, 'local' or 'ray', got {type(engine).__name__}")


def require_ray() -> Any:
    """The ``ray`` module; a :class:`~prefaudit.errors.ConfigError` (CLI exit 2) saying how to
    install it when it is missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data, which is not installed: "
                          "pip install 'prefaudit[ray]'") from None
    return ray


def _ray(engine: Engine) -> Any:
    """The ``ray`` module, connected (a local instance is started once per process)."""
    ray = require_ray()
    if not ray.is_initialized():
        if engine.address is None:
            ray.init(num_cpus=max(os.cpu_count() or 1, engine.workers + 1), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            atexit.register(ray.shutdown)
        else:
            ray.init(address=engine.address, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    return ray


def _map(engine: Engine, items: list[dict[str, Any]], actor: type, kwargs: dict[str, Any],
         batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Run ``actor`` over ``items`` on an actor pool; yield its output batches as they finish."""
    ray = _ray(engine)
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * engine.workers)))
    out = ds.map_batches(actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=engine.workers),
                         num_gpus=engine.gpus_per_worker or None)
    yield from out.iter_batches(batch_size=None, batch_format="numpy")


# ---- embeddings -------------------------------------------------------------------------

class _EmbedActor:
    """Holds one sentence-transformers model; maps ``{"i", "text"}`` to ``{"i", "vector"}``."""

    def __init__(self, model: str | None, batch_size: int, device: str | None) -> None:
        from prefaudit.scoring.embed import load_model

        self.model = load_model(model, device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.model.encode(batch["text"].tolist(), batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32, copy=False)
        return {"i": batch["i"], "vector": vecs}


def embed_chunks(engine: Engine, texts: list[str], chunk: int, *, model: str | None, batch_size: int,
                 device: str | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Embed ``texts`` on the Ray engine; yield ``(positions, vectors)`` per finished chunk of
    ``chunk`` texts (positions index ``texts``)."""
    items = [{"i": i, "text": t} for i, t in enumerate(texts)]
    kwargs = {"model": model, "batch_size": batch_size, "device": device}
    for out in _map(engine, items, _EmbedActor, kwargs, chunk):
        yield out["i"].astype(np.int64), np.asarray(out["vector"], dtype=np.float32)


# ---- reference log-probs ----------------------------------------------------------------

class _LogprobActor:
    """Holds one reference model; maps a batch of encoded pairs to their scores (log-probs and
    CHES, :data:`prefaudit.scoring.logprob_cache.VALUES`) with
    :func:`prefaudit.scoring.logprobs.score_encoded` (called as a black box, no cache)."""

    def __init__(self, load: Callable[[], tuple[Any, Any]]) -> None:
        self.model, self.tokenizer = load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from prefaudit.scoring.logprobs import score_encoded

        rows = [r for rows in batch["rows"] for r in rows]
        scored = score_encoded(self.model, self.tokenizer, rows, cache_dir=None, progress=False,
                               token_budget=sum(r.row_length for r in rows))
        return {"i": np.concatenate([np.asarray(i) for i in batch["i"]]), "sums": scored.values}


def score_batches(engine: Engine, batches: list[list[Any]], positions: list[list[int]],
                  load: Callable[[], tuple[Any, Any]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Score planned batches of encoded pairs on the Ray engine; yield ``(positions, values)`` per
    finished batch, ``values`` being ``(n, len(VALUES))`` (chosen and rejected log-prob, CHES
    raw and length-normalised). ``load`` returns ``(model, tokenizer)`` in an actor (it is
    pickled and sent to each actor once)."""
    from prefaudit.scoring.logprob_cache import VALUES

    items = [{"i": np.asarray(p, dtype=np.int64), "rows": b} for p, b in zip(positions, batches, strict=True)]
    for out in _map(engine, items, _LogprobActor, {"load": load}, 1):
        yield out["i"].astype(np.int64), np.asarray(out["sums"], dtype=np.float64).reshape(-1, len(VALUES))


def fill_logprob_cache(engine: Engine, model: Any, tokenizer: Any, encoded: list[Any], cache_dir: Any, *,
                       token_budget: int | None = None, load: Callable[[], tuple[Any, Any]] | None = None,
                       on_batch: Callable[[int, int], None] | None = None) -> int:
    """Score on the Ray engine the encoded pairs that the log-prob cache of ``model`` in
    ``cache_dir`` lacks, writing each returned batch into that cache; returns how many pairs
    were sent. ``load`` builds ``(model, tokenizer)`` in an actor; None sends the driver's own objects.
    ``on_batch(pairs_done, pairs_to_do)`` runs after each batch is cached (raising stops the
    run; the next run resumes from the cache). The batches are the local engine's
    (:func:`~prefaudit.scoring.logprobs.plan_batches` over all pairs, a batch sent only when one
    of its pairs is not cached), so both engines score each pair in the same company."""
    from prefaudit.scoring.logprob_cache import LogprobCache, pair_key
    from prefaudit.scoring.logprobs import default_token_budget, plan_batches

    cache = LogprobCache.for_model(model, cache_dir)
    keys = [pair_key(e.prompt, e.chosen, e.rejected) for e in encoded]
    budget = token_budget or default_token_budget("cuda" if engine.gpus_per_worker else "cpu")
    plan = [b for b in plan_batches([e.row_length for e in encoded], budget)
            if any(keys[i] not in cache for i in b)]
    todo = sum(len(b) for b in plan)
    if not todo:
        return 0
    done = 0
    for pos, values in score_batches(engine, [[encoded[i] for i in b] for b in plan], plan,
                                     load or _Loaded(model, tokenizer)):
        cache.put_many((keys[i], v) for i, v in zip(pos.tolist(), values, strict=True)
                       if keys[i] not in cache)
        done += len(pos)
        if on_batch is not None:
            on_batch(done, todo)
    return todo


@dataclass(frozen=True)
class _Loaded:
    """A loader that returns objects the driver already holds (pickled to each actor)."""

    model: Any
    tokenizer: Any

    def __call__(self) -> tuple[Any, Any]:
        return self.model, self.tokenizer
