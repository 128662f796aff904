"""The app in a real browser (Debian's chromium through Playwright): gallery, sketch, errors.

Also proves the page loads offline (no request leaves 127.0.0.1) and that a screenshot of it
is not blank (`make screenshots` takes the documentation's).
Skipped when chromium or Playwright is missing, unless ROWGEN_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rowgen.bundle import find_bundles
from serve.app.layout import build_app, free_port, launch
from serve.runtime import load_models
from tests.chromium import LOCAL_HOSTS, TIMEOUT_MS, open_chromium, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> tuple[Path, bool]:
    """The real bundles when training has made them (for a telling screenshot), else tiny ones."""
    real = REPO / "artifacts"
    if find_bundles(real):
        return real, True
    return request.getfixturevalue("tiny_bundles"), False


@pytest.fixture(scope="module")
def app_url(artifacts: tuple[Path, bool]) -> Iterator[str]:
    demo = build_app(load_models(artifacts[0], "cpu"))
    _, url, _ = launch(demo, port=free_port(), block=False)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def page(app_url: str):
    with open_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.requests = []  # type: ignore[attr-defined]
        page.on("request", lambda r: page.requests.append(r.url))  # type: ignore[attr-defined]
        page.goto(app_url)
        yield page


def test_missing_browser_fails_only_when_required(monkeypatch) -> None:
    monkeypatch.setenv("ROWGEN_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="requires the browser test"):
        unavailable("no chromium")
    monkeypatch.delenv("ROWGEN_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        unavailable("no chromium")


def stats_text(page) -> str:
    return page.locator("#stats").inner_text()


def test_gallery_completion(page, artifacts: tuple[Path, bool], tmp_path: Path) -> None:
    page.locator("#gallery .thumbnail-item").nth(4).click()  # a click also runs it
    page.get_by_text("Chosen: Pullover").wait_for()
    page.wait_for_function("document.querySelector('#stats')?.innerText.includes('MSE')")
    assert "generated" in stats_text(page)
    image = page.locator("#result img")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 600", arg=image.element_handle()
    )
    assert urlsplit(image.get_attribute("src")).hostname in LOCAL_HOSTS
    target = tmp_path / "screenshot.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000, "the screenshot came out empty"


def test_bad_input_shows_a_message_and_the_app_keeps_working(page) -> None:
    page.get_by_role("tab", name="Upload").click()
    page.locator("#run").click()
    page.get_by_text("no image was uploaded").first.wait_for()
    page.get_by_role("tab", name="Draw").click()
    page.locator("#run").click()
    page.get_by_text("the sketch is empty").first.wait_for()


def test_sketch_completion(page) -> None:
    """The canvas is ready to draw when its tab opens: no tool to find and click first."""
    page.get_by_role("tab", name="Draw").click()
    box = page.locator("#sketch canvas").first.bounding_box()
    assert page.get_by_text("select the draw tool").count() == 0
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dx in (-20, 0, 20):  # a band down the middle; few moves: each one redraws the canvas
        page.mouse.move(cx + dx, cy - 110)
        page.mouse.down()
        page.mouse.move(cx + dx, cy + 110, steps=3)
        page.mouse.up()
    page.locator("#run").click()
    page.wait_for_function(
        "!document.querySelector('#stats')?.innerText.includes('MSE')"
        " && document.querySelector('#stats')?.innerText.includes('generated')"
    )


def test_nothing_was_fetched_from_outside(page) -> None:
    network = [urlsplit(u) for u in page.requests]
    hosts = {u.hostname for u in network if u.scheme in ("http", "https", "ws", "wss")}
    assert hosts and hosts <= LOCAL_HOSTS, f"requests left the machine: {hosts - LOCAL_HOSTS}"
