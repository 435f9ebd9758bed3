"""The home page in a real headless browser (Debian's chromium, driven by Playwright): it loads, shows the
rows the API answers, and switching member changes them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port
from tests.test_serving import bundle, bundle_dir, histories, run_dir  # noqa: F401  (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="the page test drives chromium through Playwright")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def service(bundle_dir: Path, histories: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    port = free_port()
    log_dir = tmp_path_factory.mktemp("page_log")
    process = subprocess.Popen([sys.executable, "-m", "marquee.serve", f"bundle={bundle_dir}", f"port={port}",
                                f"log_dir={log_dir}", f"histories={histories}", "seed=0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    process.kill()
    process.wait()


def _rows(page) -> list[tuple[str, list[str]]]:
    return [(section.query_selector("h2").inner_text(),
             [card.get_attribute("data-item") for card in section.query_selector_all(".card")])
            for section in page.query_selector_all("section.row")]


def test_the_page_shows_the_apis_rows_and_changes_with_the_member(service, tmp_path):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(service)
        page.wait_for_selector("#page[data-ready='1'] section.row")
        first = _rows(page)
        answer = httpx.post(f"{service}/recommend", json={"user_id": "1", "k": 8, "rows": 3, "context": {"hour": 21}})
        # the page draws what the API answers for member 1 (titles are scored the same; artwork is drawn per request)
        assert [r[0] for r in first] == [row["title"] for row in answer.json()["rows"]]
        assert [r[1] for r in first] == [[str(i["item_id"]) for i in row["items"]] for row in answer.json()["rows"]]
        assert all(section.query_selector(".reason").inner_text() for section in page.query_selector_all("section.row"))

        page.fill("#user", "2")
        page.click("#show")
        page.wait_for_selector("#page[data-member='2'][data-ready='1'] section.row")
        second = _rows(page)
        assert second != first  # another member, another page

        page.fill("#user", "no-such-member")
        page.click("#show")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "no-such-member" in page.inner_text("#error") and not page.query_selector_all("section.row")
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
