"""Embedding engine: real MiniLM vectors, the on-disk cache and its counter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefaudit.errors import ConfigError
from prefaudit.scoring import embed as E
from prefaudit.scoring.embed_cache import EmbeddingStore, model_folder


@pytest.fixture(scope="module")
def prompts(sample_dir) -> list[str]:
    return [r["input"] for r in json.loads((sample_dir / "llmbar_natural.json").read_text())][:40]


def test_minilm_vectors_are_unit_and_semantic(tmp_path):
    v = E.embed(["A man is eating food.", "A man is eating a piece of bread.",
                 "The stock market crashed today."], cache_dir=tmp_path)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.6 > 0.2 > v[0] @ v[2]


def test_cache_rerun_sends_nothing_to_the_model(tmp_path, prompts):
    before = E.texts_encoded()
    first = E.embed(prompts + prompts[:5], cache_dir=tmp_path)  # duplicates are embedded once
    assert E.texts_encoded() - before == len(prompts)
    E._STORES.clear()  # a fresh process: read the shards back from disk
    mid = E.texts_encoded()
    again = E.embed(prompts, cache_dir=tmp_path)
    assert E.texts_encoded() == mid
    np.testing.assert_array_equal(again, first[: len(prompts)])
    # an overlapping set embeds only its new texts
    E.embed(prompts[:10] + ["A prompt nobody has seen before."], cache_dir=tmp_path)
    assert E.texts_encoded() - mid == 1


def test_cache_is_keyed_by_model(tmp_path, prompts):
    E.embed(prompts[:3], cache_dir=tmp_path)
    store = EmbeddingStore(model_folder(tmp_path, "some/other-model"))
    assert len(store) == 0
    assert len(EmbeddingStore(model_folder(tmp_path, E.resolve_model(None)[0]))) == 3


def test_corrupt_shard_is_ignored_and_reembedded(tmp_path, prompts):
    E.embed(prompts[:4], cache_dir=tmp_path)
    folder = model_folder(tmp_path, E.resolve_model(None)[0])
    for shard in folder.glob("*.npz"):
        shard.write_bytes(b"not a zip file")
    E._STORES.clear()
    before = E.texts_encoded()
    E.embed(prompts[:4], cache_dir=tmp_path)
    assert E.texts_encoded() - before == 4


def test_shards_compact_and_keep_every_vector(tmp_path, monkeypatch):
    monkeypatch.setattr("prefaudit.scoring.embed_cache.MAX_SHARDS", 3)
    store = EmbeddingStore(tmp_path / "m")
    rng = np.random.default_rng(0)
    keys = [bytes([i]) * 16 for i in range(10)]
    vecs = rng.normal(size=(10, 4)).astype(np.float32)
    for a in range(0, 10, 2):
        store.add(keys[a:a + 2], vecs[a:a + 2])
    assert len(list((tmp_path / "m").glob("*.npz"))) <= 3
    pos, got = EmbeddingStore(tmp_path / "m").lookup(keys[::-1])
    np.testing.assert_array_equal(pos, np.arange(10))
    np.testing.assert_array_equal(got, vecs[::-1])


def test_bad_inputs_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="text 1 is int"):
        E.embed(["ok", 3], cache_dir=tmp_path)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="cannot load embedding model"):
        E.embed(["x"], "no-such-org/no-such-model", cache_dir=tmp_path)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    from prefaudit.env import default_cache_dir

    monkeypatch.setenv("PREFAUDIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
