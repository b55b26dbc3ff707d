"""Issue 15, loss explorer in headless Chromium: the view control opens the pair view (only then does it run),
a link can name the view, and the toy's words come from its fits."""
from __future__ import annotations

import tests.test_browser as tb
from tests.test_browser import _dismiss_page_not_found, _shoot

server, browser = tb.server, tb.browser  # the real server and headless Chromium (skipped without Chromium)

PAIR = "Your teacher and student"


def _open_view(page, label: str, marker: str) -> None:
    page.get_by_role("radio", name=label, exact=True).click()  # a segmented control: radio buttons
    page.get_by_text(marker).first.wait_for(timeout=120_000)


def test_loss_explorer_views_in_browser(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/losses", wait_until="domcontentloaded")
    page.get_by_text("Forward KL spreads the student").first.wait_for(timeout=120_000)
    _dismiss_page_not_found(page)
    assert page.get_by_text("Balance loss weights by gradient norm").count() == 0  # the pair has not run
    _open_view(page, PAIR, "Balance loss weights by gradient norm")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=120_000)
    page.get_by_text("A good plan puts its mass on the diagonal").first.wait_for(timeout=30_000)
    assert "view=pair" in page.url
    _shoot(page, "issue15_losses_pair", 1500)
    _open_view(page, "Toy: one bump vs a multimodal teacher", "What each fit did")
    _shoot(page, "issue15_losses_toy", 1500)
    page.close()


def test_a_link_opens_the_pair_view(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/losses?view=pair", wait_until="domcontentloaded")
    page.get_by_text("Balance loss weights by gradient norm").first.wait_for(timeout=120_000)
    _dismiss_page_not_found(page)
    assert page.get_by_role("radio", name=PAIR, exact=True).get_attribute("aria-checked") == "true"
    page.close()
