"""One of each helper: the Wilson interval, the cache folder, offline mode, model loading, batched
tokenisation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from prefaudit.env import OFFLINE_VARIABLES, cache_root, default_cache_dir
from prefaudit.stats.length_stats import wilson_interval

PACKAGE = Path(__file__).resolve().parent.parent / "prefaudit"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("k, n", [(0, 10), (1, 10), (7, 10), (10, 10), (1023, 2312), (41, 100)])
def test_wilson_interval_equals_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


@pytest.mark.parametrize("pattern, home", [
    (r"def _?wilson", "stats/length_stats.py"),
    (r"def default_cache_dir|PREFAUDIT_CACHE\"", "env.py"),
    (r"environ\.setdefault\(\"(HF_HUB|TRANSFORMERS)_OFFLINE", "env.py"),
    (r"AutoModelForCausalLM\.from_pretrained", "scoring/models.py"),
    (r"encode_batch|backend_tokenizer|def common_prefix_length", "scoring/encoding.py"),  # pair -> ids
])
def test_each_helper_is_defined_in_one_module(pattern, home):
    found = {name for name, text in _sources().items() if re.search(pattern, text)}
    assert found <= {home}, found


def test_importing_prefaudit_turns_offline_mode_on_unless_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    code = f"import os, prefaudit; print([os.environ.get(v) for v in {OFFLINE_VARIABLES!r}])"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "['1', '1']", r.stderr
    r = subprocess.run([sys.executable, "-c", code], env={**env, "HF_HUB_OFFLINE": "0"}, capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.stdout.strip() == "['0', '1']", r.stderr


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFAUDIT_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == cache_root(None) == tmp_path / "env"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("PREFAUDIT_CACHE")
    assert cache_root("") == Path.home() / ".cache" / "prefaudit"


def test_training_and_margins_load_models_through_one_loader():
    from prefaudit.errors import ConfigError
    from prefaudit.scoring.models import load_causal_lm
    from prefaudit.train.run import _load_model

    with pytest.raises(ConfigError, match=r"^--model 'nosuchorg/nosuchmodel':.*does not download"):
        _load_model("nosuchorg/nosuchmodel", None, None)
    with pytest.raises(ConfigError, match=r"^reference model 'nosuchorg/nosuchmodel':.*does not download"):
        load_causal_lm("nosuchorg/nosuchmodel")
    with pytest.raises(ConfigError, match=r"^--model: no such folder"):
        _load_model("./no/such/model", None, None)
