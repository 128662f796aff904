"""The in-browser page (web/, served by serve.web) in Debian's chromium through Playwright.

onnxruntime-web's completion must equal Python onnxruntime's within the step tolerance for
fixed test images, on tiny bundles of every cell and mode and on the shipped LSTM; a sample
streamed by sample_step.onnx must equal Python's sample.onnx on the same seed's noise, and the
page's noise generator (web/sampling.js) Python's draw_noise bit for bit; drawing, bad files and
the sample mode of a mean-only bundle are checked too, and any request leaving 127.0.0.1 is
blocked and fails the test.
Skipped without chromium (unless ROWGEN_REQUIRE_BROWSER=1) or without `npm ci` in web/
(unless ROWGEN_REQUIRE_NODE=1), as in CI.
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from rowgen import contract
from rowgen.bundle import BundleError
from rowgen.sampling import draw_noise
from serve.app.gallery import load_gallery
from serve.web import WEB, SetupError, make_server
from tests import npm
from tests.chromium import LOCAL_HOSTS, TIMEOUT_MS, open_chromium

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SHIPPED = "shipped-lstm"
FINISHED = "['done', 'error'].includes(window.rowgen.status)"


@pytest.fixture(scope="module")
def artifacts(tiny_bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every tiny bundle plus the shipped LSTM, side by side (linked, not copied)."""
    npm.require_packages(WEB, "onnxruntime-web")
    root = tmp_path_factory.mktemp("web-artifacts")
    for name in ("lstm", "gru", "rnn", "lstm-window"):
        (root / name).symlink_to(tiny_bundles / name)
    (root / SHIPPED).symlink_to(REPO / "artifacts" / "lstm")
    return root


@pytest.fixture(scope="module")
def url(artifacts: Path) -> Iterator[str]:
    server = make_server(artifacts, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(url: str):
    with open_chromium() as browser:
        # The page's CSP forbids eval, which Playwright's wait_for_function uses; the request
        # blocking below, not the CSP, is what this test relies on.
        context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 760})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.outside = []  # type: ignore[attr-defined]
        page.local = []  # type: ignore[attr-defined]

        def route(r) -> None:
            parts = urlsplit(r.request.url)
            if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
                page.local.append(r.request.url)  # type: ignore[attr-defined]
                r.continue_()
            else:
                page.outside.append(r.request.url)  # type: ignore[attr-defined]
                r.abort()

        context.route("**/*", route)
        page.goto(url)
        page.wait_for_function("window.rowgen.status !== 'loading'")
        status = page.locator("#status").inner_text()
        assert page.evaluate("window.rowgen.status") == "ready", status
        yield page


def run(
    page, bundle: str, known_rows: int, seed: str | None = None, temperature: str = "1"
) -> dict:
    """One click of Complete: the mean, or with a `seed` the sample of that seed."""
    page.select_option("#bundle", bundle)
    page.locator("#known").evaluate(
        "(el, k) => { el.value = k; el.dispatchEvent(new Event('input')); }", known_rows
    )
    if seed is None:
        page.check("#mode-mean")
    else:
        page.check("#mode-sample")
        page.fill("#seed", seed)
        page.fill("#temperature", temperature)
    page.locator("#run").click()
    page.wait_for_function(FINISHED)
    return page.evaluate("window.rowgen")


def check_against_python(result: dict, folder: Path) -> None:
    n = contract.IMAGE_SIZE
    image = np.array(result["input"], np.float32).reshape(n, n)
    k = result["knownRows"]
    complete, stepped = npm.python_reference(folder, image, k)
    for label, browser in (("step.onnx", result["result"]), ("complete.onnx", result["complete"])):
        got = np.array(browser, np.float32).reshape(n, n)
        assert np.array_equal(got[:k], image[:k]), f"{label}: known rows were not copied exactly"
        gap = float(np.abs(got - complete).max())
        assert gap <= contract.STEP_TOLERANCE, (
            f"{label} in the browser vs Python complete.onnx: {gap:.2e}"
        )
        gap = float(np.abs(got - stepped).max())
        assert gap <= contract.STEP_TOLERANCE, f"{label} in the browser vs Python steps: {gap:.2e}"


CASES = [  # (bundle, gallery item, known rows)
    ("lstm", 0, 7),
    ("gru", 5, 14),
    ("rnn", 9, 21),
    ("lstm-window", 13, 10),
    (SHIPPED, 4, 14),
    (SHIPPED, 18, 1),
]


@pytest.mark.parametrize(("bundle", "item", "known_rows"), CASES)
def test_gallery_completion_equals_python_onnxruntime(
    page, artifacts: Path, bundle: str, item: int, known_rows: int
) -> None:
    page.get_by_role("tab", name="Test images").click()
    page.locator("#gallery button").nth(item).click()
    result = run(page, bundle, known_rows)
    assert result["status"] == "done", result.get("error")
    sample = load_gallery()[item]
    assert np.array_equal(np.array(result["input"], np.float32).reshape(28, 28), sample.image)
    check_against_python(result, artifacts / bundle)
    assert "WebAssembly" in result["backend"]
    stats = page.locator("#stats").inner_text()
    assert "step.onnx   27 calls" in stats and "ms per row" in stats


def test_drawing_is_completed(page, artifacts: Path) -> None:
    page.get_by_role("tab", name="Draw").click()
    page.locator("#clear").click()
    assert run(page, "lstm", 14)["error"] == "the drawing is empty: draw something first"
    box = page.locator("#sketch").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dx in (-40, 0, 40):  # three strokes down the middle
        page.mouse.move(cx + dx, cy - 100)
        page.mouse.down()
        page.mouse.move(cx + dx, cy + 100, steps=5)
        page.mouse.up()
    result = run(page, SHIPPED, 14)
    assert result["status"] == "done", result.get("error")
    drawn = np.array(result["input"]).reshape(28, 28)
    assert drawn[6:21, 8:20].max() > 0.9 and drawn[:, :3].max() == 0.0, "drawing not fitted"
    check_against_python(result, artifacts / SHIPPED)


def test_bad_files_get_a_message(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Upload").click()
    assert "no image was uploaded" in run(page, "lstm", 14)["error"]
    fake = tmp_path / "shoe.png"
    fake.write_bytes(b"this is not a PNG at all")
    page.set_input_files("#file", str(fake))
    page.get_by_text("shoe.png is not an image this browser can decode").wait_for()
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    page.set_input_files("#file", str(empty))
    page.get_by_text("empty.png is empty").wait_for()
    assert run(page, "lstm", 14)["status"] == "error", "a bad upload must not be completed"


def test_an_upload_is_fitted_and_completed(page, artifacts: Path, tmp_path: Path) -> None:
    from PIL import Image

    picture = np.zeros((60, 30), np.uint8)  # tall: fitted to 28 rows, centred, black margins
    picture[10:50, 5:25] = 255
    Image.fromarray(picture).save(tmp_path / "tall.png")
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#file", str(tmp_path / "tall.png"))
    page.get_by_text("tall.png: ready").wait_for()
    result = run(page, "gru", 12)
    assert result["status"] == "done", result.get("error")
    image = np.array(result["input"]).reshape(28, 28)
    assert image[:, :6].max() < 0.05 and image[14, 14] > 0.95
    check_against_python(result, artifacts / "gru")


@pytest.mark.parametrize(
    ("item", "known_rows", "seed", "temperature"),
    [(4, 14, 5, 1.0), (18, 7, 2**63 - 1, 0.5), (11, 21, 0, 2.0)],
)
def test_a_sampled_completion_equals_python_sample_onnx(
    page, artifacts: Path, item: int, known_rows: int, seed: int, temperature: float
) -> None:
    page.get_by_role("tab", name="Test images").click()
    page.locator("#gallery button").nth(item).click()
    result = run(page, SHIPPED, known_rows, str(seed), str(temperature))
    assert result["status"] == "done", result.get("error")
    assert (result["mode"], result["seed"], result["temperature"]) == (
        "sample",
        str(seed),
        temperature,
    )
    n, k = contract.IMAGE_SIZE, known_rows
    image = np.array(result["input"], np.float32).reshape(n, n)
    want = npm.python_sample(artifacts / SHIPPED, image, k, seed, temperature)
    got = np.array(result["result"], np.float32).reshape(n, n)
    assert np.array_equal(got[:k], image[:k]), "sample_step.onnx: known rows were not copied"
    gap = float(np.abs(got - want).max())
    print(f"browser sample_step.onnx vs Python sample.onnx (seed {seed}): {gap:.2e}")
    assert gap <= contract.STEP_TOLERANCE, f"browser sample vs Python sample.onnx: {gap:.2e}"
    mean = np.array(result["mean"], np.float32).reshape(n, n)
    assert np.abs(mean - npm.python_reference(artifacts / SHIPPED, image, k)[1]).max() <= 1e-5
    assert np.abs(got - mean).max() > 0.05, "the sample is the mean"
    assert page.locator("#output-tag").inner_text().lower() == "a sample"
    assert f"seed {seed} at temperature" in page.locator("#output-caption").inner_text()
    assert page.locator("#mean-figure").is_visible()
    stats = page.locator("#stats").inner_text()
    assert "sample_step.onnx, 27 calls" in stats and "step.onnx   27 calls" in stats


def test_the_pages_noise_is_pythons(page) -> None:
    """web/sampling.js in the page against rowgen.sampling.draw_noise: every float32 equal."""
    for seed in (0, 5, 2**32 + 7, 2**63 - 1, 2**64 - 1):
        values = page.evaluate(
            "async (seed) => Array.from((await import('/sampling.js')).drawNoise(seed, 8, 27, 28))",
            str(seed),
        )
        got = np.array(values, np.float32)  # float32 -> JS number -> float32 is exact
        want = draw_noise(seed, 8, 28).ravel()
        assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist(), f"seed {seed}"
    one = page.evaluate(
        "async () => Array.from((await import('/sampling.js')).sampleNoise('9', 3, 27, 28))"
    )
    assert np.array_equal(np.array(one, np.float32), draw_noise(9, 4, 28)[3].ravel())


def test_sample_mode_is_off_for_a_mean_only_bundle(page) -> None:
    page.select_option("#bundle", SHIPPED)
    page.check("#mode-sample")
    assert page.locator("#seed").is_enabled() and page.locator("#temperature").is_enabled()
    page.select_option("#bundle", "gru")
    assert page.locator("#mode-sample").is_disabled(), "gru cannot sample"
    assert page.locator("#mode-mean").is_checked()
    assert page.locator("#seed").is_disabled() and page.locator("#temperature").is_disabled()
    note = page.locator("#mode-note")
    assert note.is_visible() and "gru gives only the mean" in note.inner_text()
    page.select_option("#bundle", SHIPPED)
    assert page.locator("#mode-sample").is_enabled()


@pytest.mark.parametrize(
    ("seed", "temperature", "message"),
    [
        ("-1", "1", "seed must be a whole number from 0 to 9223372036854775807"),
        ("9223372036854775808", "1", "seed must be a whole number"),
        ("five", "1", "seed must be a whole number"),
        ("5", "2.5", "temperature must be a number from 0 to 2"),
    ],
)
def test_bad_sampling_options_get_a_message(page, seed: str, temperature: str, message) -> None:
    page.get_by_role("tab", name="Test images").click()
    page.locator("#gallery button").nth(0).click()
    result = run(page, SHIPPED, 14, seed, temperature)
    assert result["status"] == "error" and message in result["error"], result["error"]


def test_screenshot(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Test images").click()
    page.locator("#gallery button").nth(19).click()
    assert run(page, SHIPPED, 14)["status"] == "done"
    target = tmp_path / "web.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000, "the screenshot came out empty"


def test_nothing_was_fetched_from_outside(page) -> None:
    assert not page.outside, f"requests left the machine: {page.outside}"
    wasm = [u for u in page.local if u.endswith(".wasm")]
    assert wasm and all(urlsplit(u).path.startswith("/ort/") for u in wasm), wasm


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/bundles/lstm/weights.safetensors",
        "/bundles/lstm/../../pyproject.toml",
        "/bundles/nope/step.onnx",
        "/bundles/lstm/sample_step.onnx",  # a mean-only bundle has none
        f"/bundles/{SHIPPED}/sample.onnx",  # the page streams samples with sample_step.onnx
        "/ort/../package.json",
        "/node_modules/onnxruntime-web/package.json",
        "/package.json",
        "/ort/ort.wasm.min.mjs.map",
    ],
)
def test_server_hands_out_nothing_else(url: str, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.rstrip("/") + path)
    assert caught.value.code == 404


def test_the_index_says_which_bundles_sample(url: str) -> None:
    with urllib.request.urlopen(url + "bundles.json") as response:
        index = json.load(response)
    assert index["bundles"] == sorted(["lstm", "gru", "rnn", "lstm-window", SHIPPED])
    assert index["sampling"] == [SHIPPED]


def test_server_types_and_policy(url: str) -> None:
    for path, kind in [
        ("", "text/html"),
        ("ort/ort-wasm-simd-threaded.wasm", "application/wasm"),
        ("bundles/lstm/step.onnx", "application/octet-stream"),
        ("bundles.json", "application/json"),
    ]:
        with urllib.request.urlopen(url + path) as response:
            assert response.headers["Content-Type"].startswith(kind), path
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_server_refuses_to_start_on_a_bad_folder(tmp_path: Path) -> None:
    npm.require_packages(WEB, "onnxruntime-web")
    with pytest.raises(SetupError, match="no bundles under"):
        make_server(tmp_path, port=0)
    shutil.copytree(REPO / "artifacts" / "lstm", tmp_path / "lstm")
    (tmp_path / "lstm" / contract.STEP_ONNX).write_bytes(b"altered")
    with pytest.raises(BundleError, match=r"step\.onnx has 7 bytes"):
        make_server(tmp_path, port=0)
