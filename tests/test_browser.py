"""The app in a real browser: `streamlit run` on a free port, driven by Playwright in headless
Debian Chromium: demo -> effnet-lite0 -> ram_apl 10 % -> explore (the plot is visible) ->
evaluate & export, checking the downloaded subset.csv. Saves a screenshot of every page
(``CORESET_STUDIO_UPDATE_SCREENSHOTS=1`` also copies them to docs/screenshots/).

Needs Chromium at /usr/bin/chromium (``apt-get install chromium``; override with
``CHROMIUM_PATH``). It never downloads a browser and fails, not skips, without one.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "docs" / "screenshots"
LONG = 240_000  # ms: embedding the demo with effnet-lite0 takes ~15 s here, more on a busy CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = dict(os.environ, CORESET_STUDIO_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("streamlit did not become healthy:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
                    "(or set CHROMIUM_PATH). The browser test never downloads a browser.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 1500}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()
        browser.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished running the script (no 'running' indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=LONG)
    page.wait_for_timeout(500)


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _go(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    _settle(page)


def test_demo_to_export_in_chromium(server, browser_page, tmp_path):
    page = browser_page
    shots = tmp_path / "shots"
    shots.mkdir()
    taken = []

    # 1. Data: the demo is preloaded
    page.goto(server)
    page.get_by_text("Images per class").first.wait_for(timeout=LONG)
    _settle(page)
    assert page.locator("[data-testid='stMetricValue']").first.inner_text() == "1200"
    assert page.locator(".js-plotly-plot").first.is_visible()
    taken.append(_shot(page, shots, "1-data.png"))

    # 2. Models: effnet-lite0 (offline) is picked by default; compute
    _go(page, "Models")
    page.get_by_role("button", name="Compute embeddings").click()
    page.get_by_text("Embeddings ready").wait_for(timeout=LONG)
    _settle(page)
    assert page.get_by_text("effnet-lite0").first.is_visible()
    taken.append(_shot(page, shots, "2-models.png"))

    # 3. Select: ram_apl, 10 % (the defaults)
    _go(page, "Select")
    page.get_by_role("button", name="Run selection").click()
    page.get_by_text("Kept vs total per class").wait_for(timeout=LONG)
    _settle(page)
    assert "100 / 1000" in page.locator("[data-testid='stMetricValue']").first.inner_text()
    taken.append(_shot(page, shots, "3-select.png"))

    # 4. Explore: the map is visible (UMAP replaces the PCA preview when ready)
    _go(page, "Explore")
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(state="visible", timeout=LONG)
    assert plot.is_visible()
    try:
        page.get_by_text("UMAP of effnet-lite0").wait_for(timeout=90_000)
    except Exception:  # noqa: BLE001 - PCA preview is fine for the test; UMAP is nicer for the picture
        pass
    _settle(page)
    taken.append(_shot(page, shots, "4-explore.png"))

    # 5. Evaluate & export: evaluate, then download subset.csv
    _go(page, "Evaluate & export")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Full training pool").wait_for(timeout=LONG)
    _settle(page)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="subset.csv", exact=True).click()
    target = tmp_path / "subset.csv"
    info.value.save_as(target)
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100  # 10 % of 100 training images in each of 10 classes
    assert len({r["label"] for r in rows}) == 10  # 10 kept in each class
    assert all(r["path"].endswith(".png") for r in rows)
    taken.append(_shot(page, shots, "5-evaluate.png"))

    assert all(p.stat().st_size > 10_000 for p in taken)
    if os.environ.get("CORESET_STUDIO_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        for p in taken:
            shutil.copy(p, SHOTS / p.name)
