"""The report in a real browser: headless Chromium loads it with no console message and no
network request, and the first screen shows the verdict.

Each check is also run on a planted bad page (a script error, an external image) to show it
can fail. Skips with a reason where no Chromium is installed (CI installs Debian's).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from prefaudit.audit import audit
from prefaudit.loaders import load
from prefaudit.report import render_html

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no headless Chromium installed (apt-get install chromium)")
PIL = pytest.importorskip("PIL.Image")

#: Hosts Chromium itself contacts (updates, clock, accounts); requests from the page have any other host.
BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


def _chromium(page: Path, tmp: Path, *extra: str) -> tuple[str, str, list[str]]:
    """Load ``page``; return (dom, console lines, URLs the network log saw from the page)."""
    netlog = tmp / "net.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--log-net-log={netlog}", "--virtual-time-budget=3000", *extra, page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    urls = re.findall(r'"url":"([^"]+)"', netlog.read_text(encoding="utf-8", errors="replace")) \
        if netlog.exists() else []
    from_page = [u for u in urls if not u.startswith(("file:", "data:"))
                 and not any(re.match(rf"https?://([^/]*\.)?{re.escape(h)}[:/]", u) for h in BROWSER_HOSTS)]
    return proc.stdout, "\n".join(console), from_page


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, sample_dir: Path) -> Path:
    """A real report (hygiene on the LLaMA-Factory sample) with planted hostile text and a verdict."""
    table, rep = load(sample_dir / "llama_factory_dpo_en_100.json")
    table.loc[0, "chosen"] = table.loc[0, "rejected"] = ("<script>alert(1)</script>"
                                                         "<img src=x onerror=alert(1)>")
    table.loc[1, "prompt"] = "</textarea>" + "x" * 10_000
    table.loc[1, "chosen"] = ""
    result = audit(table, ["hygiene"], load_report=rep)
    result.verdict = {"status": "fail", "policy": "test", "rules": [
        {"metric": "hygiene.identical_pair_share", "status": "fail", "observed": 0.01, "threshold": "<= 0",
         "severity": "fail", "message": "chosen and rejected are the same text"}]}
    out = tmp_path_factory.mktemp("browser")
    page = out / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    return page


def test_page_loads_without_console_messages_or_requests(report_page: Path, tmp_path: Path) -> None:
    dom, console, requests = _chromium(report_page, tmp_path, "--dump-dom")
    assert console == ""
    assert requests == []
    assert 'id="verdict"' in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom


def test_checks_catch_a_bad_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://example.invalid/a.png"><script>undefinedFn()</script>'
                   "</body></html>", encoding="utf-8")
    _, console, requests = _chromium(bad, tmp_path, "--dump-dom")
    assert "undefinedFn is not defined" in console
    assert requests == ["http://example.invalid/a.png"] * len(requests) and requests


def test_first_screen_shows_the_verdict(report_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    _chromium(report_page, tmp_path, "--window-size=1280,800", f"--screenshot={shot}", "--hide-scrollbars")
    img = np.asarray(PIL.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (800, 1280)
    assert img.std() > 20  # not blank
    # the FAIL badge: a large block of the verdict red (#b3261e) in the first screen's top third
    red = (abs(img[..., 0] - 0xB3) < 12) & (abs(img[..., 1] - 0x26) < 12) & (abs(img[..., 2] - 0x1E) < 12)
    assert red[: 800 // 3].mean() > 0.03
