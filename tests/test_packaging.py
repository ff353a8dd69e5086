"""The wheel carries what the installed command needs; the CI example installs something that exists."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def test_package_data_covers_templates_policies_and_py_typed():
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["prefaudit"]
    for f in ("py.typed", "policies/default.toml", "report/templates/report.html.j2"):
        assert (REPO / "prefaudit" / f).is_file()
        assert any(Path(f).match(p) for p in patterns), f
    assert any(d.startswith("build") for d in data["project"]["optional-dependencies"]["dev"])


def test_ci_example_never_installs_prefaudit_from_pypi():
    text = (REPO / "examples" / "ci" / "prefaudit-gate.yml").read_text(encoding="utf-8")
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and not any(re.search(r"\sprefaudit(\s|$|[=<>])", line) for line in installs), installs
    assert "PREFAUDIT:" in text and ".whl" in text


def _has_build() -> bool:
    try:
        return importlib.util.find_spec("build.__main__") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _has_build(), reason="needs the build package (dev extra)")
def test_wheel_installs_into_a_fresh_venv_and_audits_the_sample():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(["bash", "scripts/check_wheel.sh"], cwd=REPO, capture_output=True, text=True,
                       env={**env, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "installs into a fresh venv" in r.stdout
