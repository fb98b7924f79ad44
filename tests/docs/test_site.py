"""The manual and a study's report, opened in a real browser (headless Chromium through
Playwright): every page and image loads, no console error, every internal link resolves.
The site is built here with warnings as errors, as CI builds it."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.conftest import cli, use_quick_plan, write_cifar

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

sphinx = pytest.importorskip("sphinx.cmd.build", reason="the docs extra: pip install -e '.[docs]'")
playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra installs Playwright")
pytestmark = [
    pytest.mark.slow,  # builds the site, starts a browser
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # Sphinx 11's, inside extensions
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
]


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def visit(browser, url: str) -> dict:
    """Open url; its console errors, failed requests, images that did not load, and the
    local files its links point at."""
    page = browser.new_page()
    errors, failed = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(url, wait_until="load")
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.src)"
    )
    images = page.evaluate("document.images.length")
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    page.close()
    local = [
        Path(unquote(urlparse(h).path)) for h in links if h.startswith("file:") and "#" not in h[:7]
    ]
    return {"errors": errors, "failed": failed, "broken": broken, "images": images, "links": local}


def test_the_built_site_loads_in_a_browser(browser, tmp_path):
    out = tmp_path / "html"
    assert sphinx.build_main(["-W", "-q", str(ROOT / "docs"), str(out)]) == 0
    pages = sorted(p for p in out.rglob("*.html") if "_modules" not in p.parts)
    assert len(pages) >= 15
    images = links = 0
    for page in pages:
        seen = visit(browser, page.as_uri())
        assert seen["errors"] == [] and seen["failed"] == [] and seen["broken"] == [], page
        for target in seen["links"]:
            assert target.exists(), f"{page.relative_to(out)} links to missing {target}"
        images += seen["images"]
        links += len(seen["links"])
    assert images >= 5  # the tutorials' figures
    assert links > 20 * len(pages)  # the navigation and the pages' own cross-links


def test_a_quick_study_report_loads_in_a_browser(browser, tmp_path, monkeypatch):
    write_cifar(tmp_path / "data", n_train=500, n_test=200, learnable=True)
    use_quick_plan(
        monkeypatch,
        base=({"limit": 40, "eval_limit": 20, "epochs": 2, "batch_size": 20}, [0.03]),
        improved=({"lr": 0.01, "limit": 16, "eval_limit": 8, "epochs": 1, "batch_size": 8}, [0.01]),
    )
    out = tmp_path / "study"
    args = ["study", "--quick", "--data-dir", tmp_path / "data", "--out", out, "--quiet"]
    assert cli(monkeypatch, *args) == 0
    seen = visit(browser, (out / "report.html").as_uri())
    assert seen["errors"] == [] and seen["failed"] == [] and seen["broken"] == []
    assert seen["images"] >= 8  # every figure embedded
