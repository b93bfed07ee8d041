"""The page in a real browser: Playwright driving Debian's headless chromium against the tiny app.

Screenshots go to ``test-artifacts/`` for a person to look at.
"""

import json
import re
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylizer.config import Limits
from stylizer.serving.worker import Worker
from stylizer.ui import CSS, THEME, build_demo

from .apphelpers import served

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def worker():
    return Worker("tiny", ["cpu"], limits=Limits())


@pytest.fixture(scope="module")
def runs(worker):
    """Every Stylize job's updates, as the worker sent them to the page."""
    return []


@pytest.fixture(scope="module")
def page(worker, runs):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    demo = build_demo(RecordingJobs(worker, runs), previews=True, preparation=True)
    with served(demo, theme=THEME, css=CSS) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 1000})
        tab.goto(url)
        tab.get_by_role("button", name="Stylize", exact=True).wait_for()
        yield tab
        browser.close()


class RecordingJobs:
    """The worker, keeping every Stylize job's updates as the worker sent them to the page."""

    def __init__(self, worker, runs):
        self._worker, self._runs = worker, runs

    def __getattr__(self, name):
        return getattr(self._worker, name)

    def run(self, request):
        self._runs.append([])
        for update in self._worker.run(request):
            self._runs[-1].append(update)
            yield update


def result_src(page) -> str | None:
    images = page.locator("#result img")
    return images.first.get_attribute("src") if images.count() else None


def pixels(page, src: str) -> np.ndarray:
    """The decoded pixels of an image the page shows, fetched the way the browser does."""
    body = page.request.get(src).body()
    return np.asarray(Image.open(BytesIO(body)).convert("RGB"), dtype=np.int16)


def status_text(page) -> str:
    return page.locator("#status").inner_text()


def set_number(page, label: str, value: str) -> None:
    """Type into a slider's number box until the page keeps the value (a freshly opened accordion may re-render)."""
    box = page.get_by_label(f"number input for {label}", exact=True)
    box.wait_for(state="visible")
    for _ in range(10):
        box.fill(value)
        box.press("Enter")
        page.wait_for_timeout(200)
        if box.input_value() == value:
            return
    raise AssertionError(f"the {label} box did not keep {value}")


def test_upload_type_slide_stylize_and_stop(page, picture_path):
    page.locator("input[type=file]").first.set_input_files(picture_path)
    page.get_by_label("Style prompt").fill("drawing with black ink")
    set_number(page, "Content (keep structure)", "300")
    page.get_by_text("Advanced").click()
    set_number(page, "Steps", "40")
    set_number(page, "Strength (how far from the input)", "1")
    page.screenshot(path=str(ARTIFACTS / "1-ready.png"), full_page=True)

    page.get_by_role("button", name="Stylize", exact=True).click()
    started = time.monotonic()
    sources: list[str] = []
    deadline = time.monotonic() + 120
    while "Done" not in status_text(page) and time.monotonic() < deadline:
        src = result_src(page)
        if src and src not in sources:
            sources.append(src)
            if len(sources) == 1:
                # Kept for the record (tiny, CPU): pytest hides what passing tests print.
                first_frame_s = time.monotonic() - started
                (ARTIFACTS / "first-frame.json").write_text(json.dumps({"first_frame_s_after_click": round(first_frame_s, 2)}))
            if len(sources) == 2:
                page.screenshot(path=str(ARTIFACTS / "2-streaming.png"), full_page=True)
        time.sleep(0.05)
    assert "Done" in status_text(page)
    final = result_src(page)
    assert len([s for s in sources if s != final]) >= 2, "the result did not update while running"
    links = page.locator("#downloads a")
    links.first.wait_for(timeout=10_000)
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert any(h.endswith("stylized.png") for h in hrefs) and any(h.endswith("trajectory.gif") for h in hrefs)
    assert page.locator("#settings").inner_text().count('"w_content": 300') == 1
    page.screenshot(path=str(ARTIFACTS / "3-done.png"), full_page=True)

    # One click reproduces the run: same seed (even with random seeds ticked), same picture.
    random_seed = page.get_by_label("Random seed each run")
    random_seed.check()
    page.get_by_role("button", name="Apply & stylize").click()
    page.wait_for_function("() => !document.querySelector('#status').innerText.includes('Done')", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=120_000)
    assert not random_seed.is_checked()
    assert np.array_equal(pixels(page, result_src(page)), pixels(page, final)), "Apply & stylize did not reproduce the run"

    set_number(page, "Steps", "500")
    page.get_by_role("button", name="Stylize", exact=True).click()
    page.wait_for_function(
        "() => +((document.querySelector('#status').innerText.match(/Step (\\d+) \\//) || [])[1] || 0) >= 3", timeout=60_000
    )
    bar = page.locator("#status progress")
    assert bar.count() == 1 and int(bar.get_attribute("max")) == 500, "no progress bar while running"
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Stopped')", timeout=10_000)
    stopped_image = result_src(page)
    time.sleep(2.0)
    assert "Stopped" in status_text(page) and result_src(page) == stopped_image, "the run kept going after Stop"
    assert not page.locator("#downloads a").count(), "a stale result is still offered for download"
    assert not page.locator("#result").get_by_text("Error", exact=True).count(), "Stop left the result marked as an error"
    page.screenshot(path=str(ARTIFACTS / "4-stopped.png"), full_page=True)


def test_a_settings_link_fills_the_knobs(page):
    from urllib.parse import urlencode

    settings = {"prompt": "neon light", "steps": 12, "w_tv": 9.0, "seed": 42, "model": "tiny"}
    page.goto(page.url.split("?")[0] + "?" + urlencode({"settings": json.dumps(settings)}))
    page.get_by_role("button", name="Stylize", exact=True).wait_for()
    page.wait_for_function("() => document.querySelector('textarea')?.value === 'neon light'", timeout=15_000)
    page.get_by_text("Advanced").click()
    steps = page.get_by_label("number input for Steps", exact=True)
    steps.wait_for(state="visible")
    assert steps.input_value() == "12"
    assert page.get_by_label("number input for Smoothness (total variation)", exact=True).input_value() == "9"


def first_frame_seconds(page) -> tuple[float, list[str]]:
    """Press Stylize; the seconds until the result shows this run's first picture (with its step), and every status shown."""
    page.evaluate(
        """() => {
            const status = document.querySelector('#status');
            window.statuses = [];
            new MutationObserver(() => window.statuses.push(status.innerText)).observe(status, {subtree: true, childList: true, characterData: true});
        }"""
    )
    before = page.evaluate("() => document.querySelector('#result img')?.src || ''")
    page.get_by_role("button", name="Stylize", exact=True).click()
    started = time.monotonic()
    page.wait_for_function(
        """(before) => {
            const image = document.querySelector('#result img');
            return /Step \\d+ \\//.test(document.querySelector('#status').innerText) && image && image.src !== before;
        }""",
        arg=before,
        timeout=60_000,
        polling=10,
    )
    seconds = time.monotonic() - started
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=120_000)
    return seconds, page.evaluate("() => window.statuses")


def test_upload_prepares_a_slider_previews_and_stylize_starts_warm(page, runs, tmp_path):
    from .helpers import make_image

    page.goto(page.url.split("?")[0])
    page.get_by_role("button", name="Stylize", exact=True).wait_for()
    page.get_by_label("Style prompt").fill("drawing with black ink")
    cold_picture, warm_picture = tmp_path / "cold.png", tmp_path / "warm.png"
    make_image(seed=7).save(cold_picture)
    make_image(seed=8).save(warm_picture)

    # Cold: Stylize at once after the upload, before any preparation could finish.
    page.locator("input[type=file]").first.set_input_files(str(cold_picture))
    cold, _ = first_frame_seconds(page)
    assert any(u.inverting for u in runs[-1]) and not any(u.reused for u in runs[-1])

    # Warm: with "Live preview" on, a new picture is prepared in the background for both ("Ready").
    page.get_by_label("Live preview").check()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Preview at')", timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(warm_picture))
    page.wait_for_function("() => !document.querySelector('#prepared').innerText.includes('Ready')", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#prepared').innerText.includes('Ready')", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "5-prepared.png"), full_page=True)

    # Releasing a slider shows a "Preview" of the new picture without pressing Stylize.
    slider = page.locator("input[type=range]").nth(2)  # Content (keep structure)
    box = slider.bounding_box()
    before = page.evaluate("() => document.querySelector('#result img')?.src")
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "(before) => document.querySelector('#result img')?.src !== before && document.querySelector('#status').innerText.includes('Preview at')",
        arg=before,
        timeout=60_000,
    )
    assert page.locator("#result").get_by_text("Preview", exact=True).count(), "the Result area is not marked Preview"
    page.screenshot(path=str(ARTIFACTS / "6-preview.png"), full_page=True)

    warm, statuses = first_frame_seconds(page)
    assert any(u.reused for u in runs[-1]) and not any(u.inverting for u in runs[-1]), "Stylize did not start from the prepared picture"
    assert not any(re.search(r"Inverting the picture \(DDIM\) \d+ /", text) for text in statuses), statuses
    (ARTIFACTS / "first-frame-warm-vs-cold.json").write_text(
        json.dumps({"cold_first_frame_s": round(cold, 3), "warm_first_frame_s": round(warm, 3), "warm_over_cold": round(warm / cold, 3)})
    )
    page.screenshot(path=str(ARTIFACTS / "7-warm-done.png"), full_page=True)


def shown(page, selector: str) -> np.ndarray:
    """The pixels of the image an element shows."""
    return pixels(page, page.locator(selector).first.get_attribute("src"))


def test_a_painted_mask_keeps_the_unpainted_side_unchanged(page, tmp_path):
    from .helpers import make_image

    page.goto(page.url.split("?")[0])
    page.get_by_role("button", name="Stylize", exact=True).wait_for()
    page.get_by_label("Style prompt").fill("drawing with black ink")
    make_image(160, 120, seed=3).save(tmp_path / "picture.png")
    page.locator("input[type=file]").first.set_input_files(str(tmp_path / "picture.png"))
    page.get_by_text("Region to restyle (optional)").click()
    page.locator("#painter button[aria-label='Brush']").click()
    canvas = page.locator("#painter canvas").last.bounding_box()
    x, top = canvas["x"] + canvas["width"] * 0.3, canvas["y"] + canvas["height"] * 0.2
    page.mouse.move(x, top)
    page.mouse.down()
    for k in range(1, 21):  # a vertical stroke over the left part of the picture
        page.mouse.move(x, top + k * canvas["height"] * 0.03, steps=2)
    page.mouse.up()
    page.locator("#mask img").first.wait_for(timeout=30_000)
    mask = shown(page, "#mask img")[..., 0]
    painted_columns = np.flatnonzero(mask.max(axis=0) > 0)
    assert painted_columns.size and painted_columns.max() < mask.shape[1] * 0.8, "the stroke should leave the right side unpainted"
    page.screenshot(path=str(ARTIFACTS / "8-painted.png"), full_page=True)

    page.get_by_role("button", name="Stylize", exact=True).click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=120_000)
    before, after = shown(page, "#comparison img"), shown(page, "#comparison img >> nth=1")
    # Columns beyond the stroke's reach (its feather and a resizing margin) are the input's own pixels.
    scale = after.shape[1] / mask.shape[1]
    kept = int((painted_columns.max() + 1) * scale) + 4
    assert before.shape == after.shape and kept < after.shape[1]
    assert np.abs(after[:, kept:] - before[:, kept:]).max() <= 1
    assert np.abs(after[:, : int(painted_columns.min() * scale)] - before[:, : int(painted_columns.min() * scale)]).max() <= 1
    assert np.abs(after - before).max() > 10  # the painted part was restyled
    page.screenshot(path=str(ARTIFACTS / "9-masked-result.png"), full_page=True)
