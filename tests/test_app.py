"""The app end to end: the real tiny models behind the worker, driven through gradio_client."""

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from PIL import Image

import app
from stylizer.config import Limits
from stylizer.serving.worker import Worker
from stylizer.ui import build_demo

from .apphelpers import bomb_png, result_path, serving, wait_until_idle, wait_until_queued
from .helpers import BAD_MASKS, save_picture

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(max_upload_mb=0.05, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    return Worker("tiny", ["cpu"], limits=LIMITS, output_dir=tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def client(worker):
    # Gradio's own upload cap sits above the worker's, so the worker's message is what the user sees.
    with serving(worker, LIMITS, max_file_size="1mb") as url:
        yield Client(url, verbose=False)


def test_frames_stream_before_the_result(client, picture_path):
    job = client.submit(
        image=handle_file(picture_path), prompt="drawing with black ink", size=64, steps=20, strength=1.0, seed=11, api_name="/stylize"
    )
    images, statuses = [], []
    for outputs in job:
        path = result_path(outputs[0])
        if path and path not in images:
            images.append(path)
        statuses.append(outputs[1])
    final = job.outputs()[-1]
    assert len(images) >= 4  # previews at steps 5, 10, 15, then the result
    intermediate = {Path(p).read_bytes() for p in images[:-1]}
    assert len(intermediate) >= 3
    assert any("Inverting the picture (DDIM) 20 / 20" in s for s in statuses)
    assert any("Step 1 / 20" in s for s in statuses) and "Done" in final[1]
    settings = json.loads(final[5])
    assert settings["seed"] == 11 and settings["prompt"] == "drawing with black ink" and settings["model"] == "tiny"
    names = sorted(Path(f).suffix for f in final[4])
    assert names == [".gif", ".png"]


def test_an_over_long_prompt_is_cut_to_clips_context_with_a_note(client, picture_path):
    essay = "a watercolour of a quiet harbour at dawn, soft light on the water, " * 45
    outputs = client.predict(image=handle_file(picture_path), prompt=essay, size=64, steps=2, strength=1.0, api_name="/stylize")
    assert "Done" in outputs[1] and "the prompt is too long for CLIP" in outputs[1] and "the end was cut off" in outputs[1]
    assert json.loads(outputs[5])["prompt"] == essay.strip()


def test_a_rerun_reuses_the_prepared_picture_and_shows_a_picture_after_step_one(client, picture_path):
    settings = dict(prompt="drawing with black ink", size=64, steps=12, strength=1.0, seed=2)
    client.predict(image=handle_file(picture_path), **settings, api_name="/stylize")
    job = client.submit(image=handle_file(picture_path), **settings, w_content=400.0, api_name="/stylize")
    statuses, first_image_status = [], None
    for outputs in job:
        statuses.append(outputs[1])
        if first_image_status is None and result_path(outputs[0]):
            first_image_status = outputs[1]
    assert any("Reusing the prepared picture" in s for s in statuses)
    assert not any("Inverting the picture (DDIM) " in s for s in statuses)
    assert "Step 1 / 12" in first_image_status  # a picture comes with the first step
    assert "Done" in job.outputs()[-1][1]


def test_the_preview_api_returns_one_small_image_and_a_status(client, worker, picture_path):
    image, status = client.predict(
        image=handle_file(picture_path), prompt="ink", size=64, preview_size=32, preview_steps=4, api_name="/preview"
    )
    with Image.open(result_path(image)) as preview:
        assert preview.size == (32, 24)
    assert status.startswith("Preview at 32×24 px")
    assert wait_until_idle(worker)


def test_a_mask_and_a_style_picture_through_the_api(client, picture_path, tmp_path):
    from PIL import ImageDraw

    from .helpers import make_image

    mask = Image.new("L", (80, 60), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 39, 59), fill=255)
    mask.save(tmp_path / "mask.png")
    make_image(seed=9).save(tmp_path / "style.png")
    outputs = client.predict(
        image=handle_file(picture_path), prompt="", style_image=handle_file(str(tmp_path / "style.png")),
        mask=handle_file(str(tmp_path / "mask.png")), mask_feather=2, size=64, steps=6, strength=1.0, api_name="/stylize",
    )  # fmt: skip
    settings = json.loads(outputs[5])
    assert settings["mask"].startswith("sha256:") and settings["style_image"].startswith("sha256:") and settings["prompt"] == ""
    with Image.open(result_path(outputs[0])) as result, Image.open(picture_path) as source:
        kept = np.asarray(result.convert("RGB"), dtype=np.int16)[:, 36:]
        expected = np.asarray(source.convert("RGB").resize((64, 48), Image.Resampling.LANCZOS), dtype=np.int16)[:, 36:]
    assert np.abs(kept - expected).max() <= 1


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        *(("mask", content, fragment) for content, fragment in BAD_MASKS.values()),
        ("style_image", b"\x89PNG\r\n\x1a\n broken", "the style picture: the image file is truncated or corrupt"),
    ],
    ids=[*(f"mask-{kind}" for kind in BAD_MASKS), "corrupt-style"],
)
def test_bad_pictures_through_the_api_get_their_message_and_the_server_stays_up(client, picture_path, tmp_path, name, content, fragment):
    path = save_picture(content, tmp_path / "picture.png")
    with pytest.raises(AppError, match="(?i)" + re.escape(fragment)):
        client.predict(
            image=handle_file(picture_path), prompt="ink", **{name: handle_file(str(path))}, size=64, steps=2, api_name="/stylize"
        )
    assert "Done" in client.predict(image=handle_file(picture_path), prompt="ink", size=64, steps=2, api_name="/stylize")[1]


def test_two_pages_with_different_pictures_never_see_each_others_images(worker, tmp_path):
    """Pages share the worker and its cache of prepared pictures; each gets its own picture's result, as a cold run gives it."""
    from stylizer.config import StyleConfig
    from stylizer.engine.sampler import stylize
    from stylizer.images import load_image
    from stylizer.request import Request

    from .helpers import make_image

    paths = []
    for seed in (1, 2):
        paths.append(str(tmp_path / f"picture-{seed}.png"))
        make_image(seed=seed).rotate(180 * seed).save(paths[-1])  # the same size: only the content tells them apart
    settings = dict(prompt="drawing with black ink", size=64, steps=6, strength=1.0, n_patches=4)
    with serving(worker, LIMITS, max_file_size="1mb") as url:
        pages = [Client(url, verbose=False) for _ in paths]
        for round_ in range(2):  # cold, then from the prepared pictures
            jobs = [page.submit(image=handle_file(path), **settings, seed=round_, api_name="/stylize") for page, path in zip(pages, paths)]
            for path, job in zip(paths, jobs):
                outputs = job.result()
                config = StyleConfig.from_record(json.loads(outputs[5]))
                expected = list(stylize(worker.replicas["cpu"], Request(load_image(path).image, config)))[-1].image
                with Image.open(result_path(outputs[0])) as got:
                    assert got.convert("RGB").tobytes() == expected.tobytes(), f"round {round_}: {path} got another picture's result"


@pytest.mark.parametrize(
    "make_image, settings, fragment",
    [
        (None, {}, "No image"),
        ("garbage", {}, "not an image"),
        ("picture", {"prompt": "   "}, "Prompt is empty"),
        ("bomb", {}, "pixels"),
        ("big", {}, "MB; the limit is"),
        ("picture", {"steps": 100000}, "steps must be between 1 and 500, got 100000"),
        ("picture", {"size": 16}, "size must be between 32 and"),
    ],
    ids=["no-image", "unreadable", "empty-prompt", "pixel-cap", "upload-cap", "steps-range", "size-range"],
)
def test_bad_input_gives_an_app_error_and_the_next_job_succeeds(client, tmp_path, picture_path, make_image, settings, fragment):
    image = None
    if make_image == "picture":
        image = handle_file(picture_path)
    elif make_image is not None:
        path = tmp_path / "upload.png"
        data = {"garbage": b"not an image, just text", "bomb": bomb_png(), "big": os.urandom(200_000)}[make_image]
        path.write_bytes(data)
        image = handle_file(str(path))
    with pytest.raises(AppError, match="(?i)" + fragment):
        client.predict(image=image, **{"prompt": "ink", "size": 64, "steps": 4, **settings}, api_name="/stylize")
    ok = client.predict(image=handle_file(picture_path), prompt="ink", size=64, steps=4, api_name="/stylize")
    assert "Done" in ok[1]


def test_two_clients_at_once_are_both_served_in_order(client, picture_path):
    other = Client(client.src, verbose=False)
    first = client.submit(image=handle_file(picture_path), prompt="first", size=64, steps=10, strength=1.0, api_name="/stylize")
    wait_until_queued(first, running=True)
    second = other.submit(image=handle_file(picture_path), prompt="second", size=64, steps=4, api_name="/stylize")
    finished = []
    threads = [
        threading.Thread(target=lambda j=j, n=n: (j.result(timeout=120), finished.append(n)))
        for j, n in ((first, "first"), (second, "second"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(130)
    assert finished == ["first", "second"]
    assert '"prompt": "first"' in first.outputs()[-1][5] and '"prompt": "second"' in second.outputs()[-1][5]


def test_a_waiting_visitor_can_load_the_page_and_sees_their_place_in_the_queue(client, picture_path):
    running = client.submit(image=handle_file(picture_path), prompt="first", size=64, steps=400, strength=1.0, api_name="/stylize")
    wait_until_queued(running, running=True)
    page = httpx.get(client.src, timeout=10)
    assert page.status_code == 200 and "Stylizer" in page.text
    waiting = Client(client.src, verbose=False).submit(
        image=handle_file(picture_path), prompt="second", size=64, steps=2, api_name="/stylize"
    )
    wait_until_queued(waiting)
    status = waiting.status()
    assert status.code == Status.IN_QUEUE and status.rank == 0 and status.queue_size >= 1, status
    running.cancel()
    assert "Done" in waiting.result(timeout=120)[1]


def test_cancel_stops_the_job_between_steps_and_frees_the_worker(client, worker, picture_path):
    job = client.submit(image=handle_file(picture_path), prompt="ink", size=64, steps=400, strength=1.0, api_name="/stylize")
    steps_seen = 0
    for outputs in job:
        if "Step" in str(outputs[1]):
            steps_seen += 1
        if steps_seen >= 3:
            break
    job.cancel()
    assert wait_until_idle(worker, 10.0), "the sampler thread kept running after cancel"
    assert not job.outputs() or "Done" not in str(job.outputs()[-1][1])
    ok = client.predict(image=handle_file(picture_path), prompt="ink", size=64, steps=4, api_name="/stylize")
    assert "Done" in ok[1]


def test_the_app_refuses_uploads_over_its_cap_and_stays_up(worker, picture_path, tmp_path):
    """Launched with main()'s own options: the cap is Gradio's, in bytes, and the server survives a refusal."""
    limits = Limits(max_upload_mb=0.25)
    options = app.launch_options(app.parse_args(["--host", "127.0.0.1"]), limits)
    demo = build_demo(worker, limits)
    demo.queue(max_size=app.parse_args([]).queue_size)
    _, url, _ = demo.launch(**{**options, "server_port": None}, prevent_thread_lock=True, quiet=True)
    try:
        big = tmp_path / "big.png"
        big.write_bytes(os.urandom(2**19))
        other = Client(url, verbose=False)
        with pytest.raises(ValueError, match="exceeds the maximum file size of 262144 bytes"):
            other.predict(image=handle_file(str(big)), prompt="ink", size=64, steps=2, api_name="/stylize")
        assert "Done" in other.predict(image=handle_file(picture_path), prompt="ink", size=64, steps=2, api_name="/stylize")[1]
    finally:
        demo.close()


def test_the_share_message_says_why_there_is_no_link():
    assert "https://abc.gradio.live" in app.share_message("https://abc.gradio.live", "http://127.0.0.1:7860", on_spaces=False)
    assert "not used on Hugging Face Spaces" in app.share_message(None, "http://127.0.0.1:7860", on_spaces=True)
    offline = app.share_message(None, "http://127.0.0.1:7860", on_spaces=False)
    assert "cannot be reached" in offline and "http://127.0.0.1:7860" in offline


def test_app_help_lists_the_flags():
    proc = subprocess.run([sys.executable, "app.py", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0
    for flag in ("--model", "--clip", "--device", "--port", "--host", "--share", "--auth", "--queue-size"):
        assert flag in proc.stdout


def test_environment_variables_override_the_defaults(monkeypatch):
    monkeypatch.setenv("STYLIZER_MODEL", "tiny")
    monkeypatch.setenv("STYLIZER_DEVICES", "cpu")
    monkeypatch.setenv("STYLIZER_AUTH", "ada:lovelace")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("STYLIZER_SHARE", "1")
    monkeypatch.setenv("STYLIZER_CLIP", "ViT-B-16")
    monkeypatch.setenv("STYLIZER_QUEUE_SIZE", "5")
    args = app.parse_args([])
    assert (args.model, args.device, args.auth, args.port) == ("tiny", ["cpu"], "ada:lovelace", 7999)
    assert (args.share, args.clip, args.queue_size) == (True, "ViT-B-16", 5)
    options = app.launch_options(args, Limits(max_upload_mb=2.5))
    assert options["auth"] == ("ada", "lovelace") and options["share"] is True and options["server_port"] == 7999
    assert options["max_file_size"] == int(2.5 * 2**20)  # bytes: Gradio refuses fractional "2.5mb"
    assert app.parse_args(["--model", "church-256"]).model == "church-256"
