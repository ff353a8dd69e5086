"""Shared fixtures: paths to the bundled samples and the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def tiny(sample_dir: Path):
    """``(model, tokenizer)``: a tiny causal LM built in code, its vocabulary from 50 real HH-RLHF
    prompts and chosen responses; one for the session (the tests only score with it)."""
    from prefaudit.loaders import load
    from prefaudit.testing import tiny_causal_lm

    hh = load(sample_dir / "hh_rlhf_harmless_test_300.jsonl").table
    return tiny_causal_lm(corpus=list(hh["prompt"].head(50)) + list(hh["chosen"].head(50)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real datasets (CI lays shared/ beside the checkout)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _every_saved_metric_is_declared(tmp_path_factory: pytest.TempPathFactory):
    """After the session: every metric in every audit.json the tests wrote is declared
    (prefaudit.metrics), so the gate, the report and README know it."""
    yield
    import json

    from prefaudit.gate import known_metric_names

    known, bad = None, []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("audit.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a test's deliberately broken file
        written = isinstance(doc, dict) and "schema_version" in doc and isinstance(doc.get("metrics"), dict)
        if not written:
            continue
        known = known if known is not None else known_metric_names()
        bad += [f"{path}: {name}" for name in doc["metrics"] if name not in known]
    assert not bad, "undeclared metrics in audit.json files the tests wrote:\n" + "\n".join(bad)
