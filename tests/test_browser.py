"""The app in a real browser: `streamlit run` on a free port, driven by Playwright in headless
Debian Chromium: demo -> effnet-lite0 -> auto 10 % -> explore (the plot is visible; hover
shows the image; a real lasso and a real box list the dots inside; the box's dropped images are
added to the subset) -> evaluate & export, checking that the downloaded subset.csv has the 100
kept rows plus the added ones. Saves a screenshot of every page
(``CORESET_STUDIO_UPDATE_SCREENSHOTS=1`` also copies them to docs/screenshots/).

Needs Chromium at /usr/bin/chromium (``apt-get install chromium``; override with
``CHROMIUM_PATH``). It never downloads a browser and fails, not skips, without one.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.export.html import thumbnail_data_uri

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "docs" / "screenshots"
LONG = 240_000  # ms: embedding the demo with effnet-lite0 takes ~15 s here, more on a busy CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One workspace for the module's servers: the second one finds the demo's embeddings cached."""
    return tmp_path_factory.mktemp("home")


@contextmanager
def _streamlit(tmp_path, home, **extra_env):
    port = _free_port()
    env = dict(
        os.environ,
        CORESET_STUDIO_HOME=str(home),
        HF_HUB_OFFLINE="1",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
        **extra_env,
    )
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app/main.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("streamlit did not become healthy:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def server(tmp_path, home):
    with _streamlit(tmp_path, home) as url:
        yield url


@pytest.fixture
def lazy_server(tmp_path, home):
    """Hover thumbnails on request, as above 5,000 points (here for the demo's 1,000)."""
    with _streamlit(tmp_path, home, CORESET_STUDIO_HOVER_EAGER_MAX="0") as url:
        yield url


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
            "(or set CHROMIUM_PATH). The browser test never downloads a browser."
        )
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
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=LONG)
    page.wait_for_timeout(500)


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _point_centres(page) -> list[tuple[float, float]]:
    """Screen centres of the Explore plot's dots (svg below 5,000 points)."""
    return [
        tuple(c)
        for c in page.evaluate(
            """() => [...document.querySelectorAll('.st-key-explore_plot .scatterlayer .point')].map(e => {
               const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })"""
        )
    ]


def _inside(centres, rect, margin: float) -> int:
    """Dots at least ``margin`` px inside ``rect`` (x0, y0, x1, y1); a negative margin lets them be outside."""
    x0, y0, x1, y1 = rect
    return sum(x0 + margin < x < x1 - margin and y0 + margin < y < y1 - margin for x, y in centres)


def _rectangle_round(point, centres, area, at_least: int):
    """A square round ``point``, inside the plot area, grown until ``at_least`` dots are well inside."""
    for half in range(15, 400, 5):
        rect = (
            max(point[0] - half, area["x"] + 2),
            max(point[1] - half, area["y"] + 2),
            min(point[0] + half, area["x"] + area["width"] - 2),
            min(point[1] + half, area["y"] + area["height"] - 2),
        )
        if _inside(centres, rect, 1.5) >= at_least:
            return rect
    raise AssertionError(f"no square round {point} holds {at_least} dots")


def _hover_until_card(page, x: float, y: float) -> None:
    """Move onto the dot at (x, y) until the hover card shows. The card listens to the chart once
    it has found it (it looks every 0.4 s), and plotly reports hovers on pointer moves only, so
    a move made just after the chart was drawn can go unseen: move off and on again."""
    card = page.locator("#cs-hover-card")
    for _ in range(20):
        page.mouse.move(x - 30, y - 30)
        page.mouse.move(x, y, steps=5)
        try:
            card.wait_for(state="visible", timeout=1_000)
            return
        except Exception:  # noqa: BLE001 - not yet: try again
            continue
    raise AssertionError(f"no hover card at ({x:.0f}, {y:.0f})")


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
    page.get_by_text("Browse a class").first.wait_for(timeout=LONG)
    _settle(page)
    assert page.locator("[data-testid='stMetricValue']").first.inner_text() == "1200"
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=30_000)  # plotly loads lazily
    taken.append(_shot(page, shots, "1-data.png"))

    # 2. Models: effnet-lite0 (offline) is picked by default; compute
    _go(page, "Models")
    page.get_by_role("button", name="Compute embeddings").click()
    page.get_by_text("Embeddings ready").wait_for(timeout=LONG)
    _settle(page)
    assert page.get_by_text("effnet-lite0").first.is_visible()
    taken.append(_shot(page, shots, "2-models.png"))

    # 3. Select: auto, 10 % (the defaults): it says what it picked
    _go(page, "Select")
    # the fraction moved with the keyboard only (End: 90, Home: 1, then 9 steps right: 10); the
    # run gets the value on the screen
    thumb = page.locator(".st-key-select_fraction input[type=range]")
    for keys in (["End"], ["Home"], ["ArrowRight"] * 9):
        thumb.focus()
        for k in keys:
            page.keyboard.press(k)
    page.get_by_role("button", name="Run selection").click()
    page.get_by_text("Kept vs total per class").wait_for(timeout=LONG)
    _settle(page)
    assert "100 / 1000" in page.locator("[data-testid='stMetricValue']").first.inner_text()
    assert page.get_by_text("for 10 %:", exact=False).first.is_visible()
    taken.append(_shot(page, shots, "3-select.png"))

    # 4. Explore: the map is visible (UMAP replaces the PCA preview when ready)
    _go(page, "Explore")
    plot = page.locator(".st-key-explore_plot .js-plotly-plot")
    plot.wait_for(state="visible", timeout=LONG)
    assert plot.is_visible()
    try:
        page.get_by_text("UMAP of effnet-lite0").wait_for(timeout=90_000)
    except Exception:  # noqa: BLE001 - UMAP is nicer for the picture; PCA keeps the map still meanwhile
        page.get_by_text("PCA", exact=True).click()
    _settle(page)
    area = page.locator(".st-key-explore_plot .nsewdrag").first.bounding_box()
    centres = _point_centres(page)
    assert len(centres) == 1000

    # hover: the card shows the hovered image (the path in plotly's own label) as its thumbnail
    x, y = sorted(centres)[len(centres) // 2]
    _hover_until_card(page, x, y)
    card = page.locator("#cs-hover-card")
    hovered = card.get_attribute("title")
    label = page.locator(".st-key-explore_plot .hoverlayer .hovertext").first
    # plotly's label names the file (not its absolute path) and the card sits beside it, never on it
    assert hovered and Path(hovered).name in label.text_content() and hovered not in label.text_content()
    assert card.locator("img").get_attribute("src") == thumbnail_data_uri(hovered, 64, "auto")
    page.wait_for_timeout(200)  # the card is placed again once plotly has drawn its label
    a, b = card.bounding_box(), label.bounding_box()
    assert (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    ), (a, b)
    taken.append(_shot(page, shots, "4-explore.png"))
    page.mouse.move(area["x"] + area["width"] + 60, area["y"] - 40)  # away: the card goes
    card.wait_for(state="hidden", timeout=10_000)
    # the sidebar summary is there on this page (it used to vanish right after a page switch)
    assert page.get_by_test_id("stSidebar").get_by_text("Dataset: demo (1200 images)").is_visible()

    # a click on a dot opens it large (the sample view) with its neighbours; Esc closes it for good
    page.mouse.click(x, y)
    clicked = card.get_attribute("title")  # the card shows the dot under the pointer when clicked
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Nearest neighbours in").wait_for(timeout=LONG)
    dialog.get_by_text(Path(clicked or hovered).name).first.wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden", timeout=30_000)
    _settle(page)
    assert page.get_by_role("dialog").count() == 0

    # a real lasso (the default drag mode) round a rectangle, then a box from the toolbar:
    # each lists the points inside (counted from the dots' screen positions)
    by_x, text = sorted(centres), ""
    for tool, seed_point in (("lasso", by_x[len(by_x) // 4]), ("box", by_x[3 * len(by_x) // 4])):
        x0, y0, x1, y1 = _rectangle_round(seed_point, centres, area, at_least=20)
        if tool == "box":
            plot.hover()
            page.locator(".st-key-explore_plot .modebar-btn[data-val='select']").click()
        page.mouse.move(x0, y0)
        page.mouse.down()
        corners = [(x1, y0), (x1, y1), (x0, y1), (x0, y0)] if tool == "lasso" else [(x1, y1)]
        for cx, cy in corners:
            page.mouse.move(cx, cy, steps=12)
        page.mouse.up()
        find = """[...document.querySelectorAll('[data-testid="stMarkdownContainer"] p')]
                  .map(e => e.innerText).find(t => /^\\d+ chosen/.test(t))"""
        page.wait_for_function(  # the app reran with this selection (its summary replaced the last one)
            f"(previous) => {{ const t = {find}; return t && t !== previous; }}", arg=text, timeout=30_000
        )
        _settle(page)
        text = page.evaluate(f"() => {find}")
        n, n_kept, n_dropped = (int(v) for v in re.match(r"(\d+) chosen \((\d+) kept, (\d+) dropped\)", text).groups())
        assert _inside(centres, (x0, y0, x1, y1), 1.5) <= n <= _inside(centres, (x0, y0, x1, y1), -1.5), (tool, n)
        assert n == n_kept + n_dropped and n > 5
    # add the dropped ones among the box's points to the subset
    page.get_by_role("button", name="Add to subset").click()
    _settle(page)
    page.get_by_text(f"Hand edits of this run: +{n_dropped} added").wait_for(timeout=30_000)

    # 5. Evaluate & export: evaluate, then download subset.csv
    _go(page, "Evaluate & export")
    page.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("Full training pool").wait_for(timeout=LONG)
    _settle(page)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="subset.csv", exact=True).click()
    target = tmp_path / "subset.csv"
    info.value.save_as(target)
    _settle(page)
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100 + n_dropped  # 10 % of 100 training images in each of 10 classes, plus the box
    assert len({r["label"] for r in rows}) == 10
    assert all(r["path"].endswith(".png") for r in rows)
    # the images themselves, a folder per class (made when clicked)
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="subset.zip", exact=True).click()
    info.value.save_as(tmp_path / "subset.zip")
    names = zipfile.ZipFile(tmp_path / "subset.zip").namelist()
    assert len([n for n in names if n.endswith(".png")]) == len(rows) and "manifest.csv" in names
    taken.append(_shot(page, shots, "5-evaluate.png"))

    # a reload keeps the session's work (the URL carries its id), hand edits included
    assert re.search(r"[?&]s=[0-9a-f]{12}", page.url), page.url
    page.reload()
    page.get_by_text(f"{100 + n_dropped} images kept (hand edits: +{n_dropped} / −0)").wait_for(timeout=LONG)

    assert all(p.stat().st_size > 10_000 for p in taken)
    if os.environ.get("CORESET_STUDIO_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        for p in taken:
            shutil.copy(p, SHOTS / p.name)


def test_hover_asks_for_each_image_when_there_are_many_points(lazy_server, browser_page):
    page = browser_page
    page.goto(lazy_server)
    page.get_by_text("Browse a class").first.wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Models")
    page.get_by_role("button", name=re.compile("Compute embeddings|Use these embeddings")).click()
    page.get_by_text("Embeddings ready").wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Select")
    # the fraction moved with the keyboard only (End: 90, Home: 1, then 9 steps right: 10); the
    # run gets the value on the screen
    thumb = page.locator(".st-key-select_fraction input[type=range]")
    for keys in (["End"], ["Home"], ["ArrowRight"] * 9):
        thumb.focus()
        for k in keys:
            page.keyboard.press(k)
    page.get_by_role("button", name="Run selection").click()
    page.get_by_text("Kept vs total per class").wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Explore")
    page.get_by_text("PCA", exact=True).click()  # a still map
    _settle(page)
    page.locator(".st-key-explore_plot .js-plotly-plot").wait_for(state="visible", timeout=LONG)
    centres = sorted(_point_centres(page))
    card = page.locator("#cs-hover-card")
    for x, y in (centres[len(centres) // 3], centres[2 * len(centres) // 3]):
        _hover_until_card(page, x, y)
        # the card asks for this row and shows it when the answer comes (one fragment rerun)
        page.wait_for_function(
            "() => !document.querySelector('#cs-hover-card').classList.contains('cs-loading')", timeout=30_000
        )
        hovered = card.get_attribute("title")
        label = page.locator(".st-key-explore_plot .hoverlayer").text_content()
        assert hovered and Path(hovered).name in label and hovered not in label  # the file name, not the path
        assert card.locator("img").get_attribute("src") == thumbnail_data_uri(hovered, 64, "auto")
