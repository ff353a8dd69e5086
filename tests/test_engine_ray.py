"""The Ray engine gives the local engine's numbers, fills the same caches and resumes.

One local Ray instance (2 CPUs) serves the module. The default run checks the log-probs of a
tiny model on 24 real HH pairs (with an interrupted run that resumes from the cache); real
MiniLM embeddings of 40 real HH prompts and the acceptance run of the issue —
the CLI with ``--engine ray --workers 2 --analyzers coverage,margins --reference-model
smollm2`` on 40 real HH pairs against ``--engine local`` — are marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from prefaudit.cli import main
from prefaudit.errors import ConfigError
from prefaudit.loaders import load
from prefaudit.scoring import embed as E
from prefaudit.scoring.engines import Engine, as_engine
from prefaudit.scoring.logprobs import score_pairs
from prefaudit.testing import tiny_causal_lm

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield Engine("ray", workers=1)
    ray.shutdown()


@pytest.fixture(scope="module")
def hh(sample_dir) -> pd.DataFrame:
    return load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table


def test_engine_specs_are_checked():
    assert as_engine(None) == Engine() and as_engine("ray").kind == "ray"
    with pytest.raises(ConfigError, match="engine must be one of"):
        as_engine("spark")
    with pytest.raises(ConfigError, match="workers"):
        Engine("ray", workers=0)


@pytest.mark.slow
def test_ray_embeddings_equal_local_and_fill_the_same_cache(ray_local, hh, tmp_path):
    texts = [p[-300:] for p in hh["prompt"].head(40)]
    local = E.embed(texts, use_cache=False, progress=False)
    before = E.texts_encoded()
    remote = E.embed(texts, cache_dir=tmp_path, progress=False, engine=ray_local)
    assert E.texts_encoded() - before == len(set(texts))
    np.testing.assert_allclose(remote, local, atol=1e-6)
    E._STORES.clear()  # as a new process would: read the shards the driver wrote
    before = E.texts_encoded()
    cached = E.embed(texts, cache_dir=tmp_path, progress=False)  # the local engine reads Ray's results
    assert E.texts_encoded() == before and np.array_equal(cached, remote)


def test_ray_logprobs_equal_local_and_an_interrupted_run_resumes(ray_local, hh, tmp_path):
    model, tok = tiny_causal_lm(corpus=list(hh["prompt"].head(50)) + list(hh["chosen"].head(50)))
    pairs = hh.head(24)
    kw = {"max_length": 80, "token_budget": 400, "progress": False}
    local = score_pairs(pairs, model, tok, cache_dir=tmp_path / "local", **kw)

    class Stop(Exception):
        pass

    def stop(done, total):
        if done >= 8:
            raise Stop

    with pytest.raises(Stop):
        score_pairs(pairs, model, tok, cache_dir=tmp_path / "ray", on_batch=stop, engine=ray_local, **kw)
    written = next((tmp_path / "ray" / "logprobs").glob("*.jsonl")).read_text().splitlines()
    assert 16 <= len(written) < 48  # the batches that came back before the stop are cached
    calls = []
    resumed = score_pairs(pairs, model, tok, cache_dir=tmp_path / "ray", engine=ray_local,
                          on_batch=lambda d, t: calls.append(t), **kw)
    assert calls and max(calls) < 24, "the resumed run sends only what the first did not finish"
    ches = ["ches", "ches_normalized"]  # sums of hidden-state dot products: hundreds, so compared relatively
    pd.testing.assert_frame_equal(resumed.drop(columns=ches), local.drop(columns=ches), check_exact=False,
                                  atol=1e-5, rtol=0)
    pd.testing.assert_frame_equal(resumed[ches], local[ches], check_exact=False, atol=0, rtol=1e-6)


def test_missing_ray_is_a_usage_error(monkeypatch, sample_dir, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code = main(["audit", str(sample_dir / "hh_rlhf_harmless_test_300.jsonl"), "--engine", "ray",
                 "--analyzers", "hygiene", "--no-pdf", "--no-gate", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'prefaudit[ray]'" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_ray_two_workers_equals_local_on_40_real_pairs(sample_dir, tmp_path):
    if ray.is_initialized():
        ray.shutdown()  # the CLI starts its own local instance
    data = tmp_path / "hh40.jsonl"
    raw = (sample_dir / "hh_rlhf_harmless_test_300.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    data.write_text("\n".join(raw) + "\n", encoding="utf-8")
    common = ["--analyzers", "coverage,margins", "--reference-model", "smollm2", "--no-pdf", "--no-gate"]
    assert main(["audit", str(data), "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1"),
                 *common]) == 0
    assert main(["audit", str(data), "--out", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "c2"),
                 "--engine", "ray", "--workers", "2", *common]) == 0
    ray.shutdown()
    a = json.loads((tmp_path / "local" / "audit.json").read_text())["metrics"]
    b = json.loads((tmp_path / "ray" / "audit.json").read_text())["metrics"]
    assert a.keys() == b.keys() and any(k.startswith("margins.") for k in a)
    for k in a:
        if a[k] is None:
            assert b[k] is None, k
        else:
            assert b[k] == pytest.approx(a[k], abs=1e-5, rel=1e-5), k
