"""The README's marked Python snippets run as written (from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNIPPET = re.compile(r"<!-- readme-snippet: (\w+) -->\n```python\n(.*?)```", re.S)


def snippets() -> dict[str, str]:
    return dict(SNIPPET.findall((REPO / "README.md").read_text(encoding="utf-8")))


def run(name: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    code = snippets()[name]
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(code, f"README.md:{name}", "exec"), namespace)
    return namespace


def test_all_marked_snippets_are_found():
    assert set(snippets()) == {"hf", "schema", "export"}


def test_hugging_face_snippet(monkeypatch):
    ns = run("hf", monkeypatch)
    assert ns["report"].formats == ["hh_rlhf"] and len(ns["table"]) == 300
    assert ns["result"].load_report.n_records == 300 and "length.share_longer_chosen" in ns["result"].metrics


def test_schema_snippet(monkeypatch):
    ns = run("schema", monkeypatch)
    table = ns["table"]
    assert table["tie"].tolist() == [False, True, False]
    assert table["chosen"].tolist() == ["7", "Hello!", "4"]
    assert ns["result"].metrics["hygiene.identical_pair_share"] == pytest.approx(1 / 3)


def test_export_snippet(monkeypatch):
    ns = run("export", monkeypatch)
    dropped = ns["clean"].attrs["dropped"]
    assert dropped["contradictory_duplicate"] == 8 and dropped["tie"] == 0
    assert len(ns["train_dataset"]) == len(ns["clean"]) == 147 - sum(dropped.values())
