import pytest
from .test_browser import server, home, browser_page, _go, _settle, LONG, _point_centres  # noqa: F401

@pytest.mark.browser
def test_debug(server, browser_page):
    page = browser_page
    page.goto(server)
    page.get_by_text("Browse a class").first.wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Models")
    page.get_by_role("button", name="Compute embeddings").click()
    page.get_by_text("Embeddings ready").wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Select")
    page.get_by_role("combobox").first.click()
    page.get_by_text("ram_apl", exact=True).click()
    _settle(page)
    page.get_by_role("button", name="Run selection").click()
    page.get_by_text("Kept vs total per class").wait_for(timeout=LONG)
    _settle(page)
    _go(page, "Explore")
    page.get_by_text("PCA", exact=True).click()
    _settle(page)
    page.wait_for_function("() => document.querySelectorAll('.st-key-explore_plot .scatterlayer .point').length > 100", timeout=LONG)
    centres = _point_centres(page)
    x, y = sorted(centres)[len(centres) // 2]
    page.mouse.move(x, y, steps=5)
    page.wait_for_timeout(500)
    page.mouse.click(x, y)
    page.wait_for_timeout(4000)
    _settle(page)
    page.screenshot(path="/tmp/click_dbg.png", full_page=True)
    print("DIALOGS", page.get_by_role("dialog").count(), page.locator("[data-testid='stDialog']").count())
    print("TEXT", [t for t in page.locator("[data-testid='stMarkdownContainer'] p").all_inner_texts() if "chosen" in t or "Tip" in t])
    print("EXC", page.locator("[data-testid='stException']").all_inner_texts()[:2], page.locator("[data-testid='stAlert']").all_inner_texts()[:3])
