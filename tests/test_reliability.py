"""Hostile input, path safety, load, disconnects, injected OOM and a memory soak, against the in-process server."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from bench.soak import BOUND_MB, STEP_MB, app_process, rss_series, verdict
from stylizer.cli import main as cli_main
from stylizer.config import Limits
from stylizer.serving import worker as worker_module
from stylizer.serving.outputs import PRIVATE_PREFIX
from stylizer.serving.worker import Worker
from stylizer.ui.inputs import NOT_BASE64, NOT_UPLOADED, PICTURE_NAMES

from .apphelpers import api_args, bomb_png, call_raw, result_path, serving, upload, wait_until_idle, wait_until_queued
from .helpers import make_image, swapped_primaries_profile

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(max_pixels=4_000_000, max_upload_mb=2.0)
FAST = {"size": 64, "steps": 4}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bomb_gif(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny GIF whose logical screen and frame claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (16, 16)), "GIF"))
    data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    frame = data.index(b",")  # image descriptor
    data[frame + 5 : frame + 9] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(data)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def with_icc() -> bytes:
    return encode(Image.new("RGB", (48, 32), (220, 30, 30)), "JPEG", icc_profile=swapped_primaries_profile())


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(make_image(64, 32), "JPEG", exif=exif.tobytes())


def sixteen_bit() -> bytes:
    return encode(Image.fromarray((np.arange(48 * 32).reshape(32, 48) * 40).astype(np.uint16), mode="I;16"), "PNG")


def float_tiff() -> bytes:
    return encode(Image.fromarray(np.linspace(0, 1, 48 * 32, dtype=np.float32).reshape(32, 48), mode="F"), "TIFF")


def nan_tiff() -> bytes:
    return encode(Image.fromarray(np.full((32, 48), np.nan, dtype=np.float32), mode="F"), "TIFF")


def corrupt_jpeg(seed: int) -> bytes:
    """A JPEG header followed by seeded garbage, so every run tests the same bytes."""
    return encode(make_image(64, 64), "JPEG")[:200] + np.random.default_rng(seed).bytes(300)


# name -> (file bytes, message fragment for a rejection, or None when the job must succeed)
CORPUS = {
    "zero-byte": (b"", "empty"),
    "truncated-png": (encode(make_image(64, 64), "PNG")[:300], "truncated or corrupt"),
    "corrupt-jpeg": (corrupt_jpeg(seed=0), "truncated or corrupt"),
    "text-as-png": (b"Just some text pretending to be an image.\n" * 4, "not an image"),
    "png-bomb": (bomb_png(), "pixels"),
    "gif-bomb": (bomb_gif(), "pixels"),
    "extreme-aspect": (encode(Image.new("RGB", (8000, 8)), "PNG"), "each side needs at least"),
    "wide-aspect": (encode(Image.new("RGB", (2000, 40)), "PNG"), "aspect ratio"),
    "one-pixel": (encode(Image.new("RGB", (1, 1)), "PNG"), "each side needs at least"),
    "cmyk": (encode(make_image(48, 32).convert("CMYK"), "JPEG"), None),
    "16-bit": (sixteen_bit(), None),
    "float": (float_tiff(), None),
    "palette-alpha": (encode(make_image(48, 32).convert("P"), "PNG", transparency=0), None),
    "animated-gif": (animated("GIF"), None),
    "animated-webp": (animated("WEBP"), None),
    "apng": (animated("PNG"), None),
    "exif-rotated": (rotated_jpeg(), None),
    "icc-profile": (with_icc(), None),
    # At 64 px (the tests' size) 8 px on its short side: too thin for VGG16, refused before any work.
    "thin": (encode(Image.new("RGB", (16, 128)), "PNG"), "px on its short side; it needs at least 16 px"),
    "all-nan-float": (nan_tiff(), "holds no finite pixel values"),
}
SUFFIX = {
    "float": ".tiff",
    "cmyk": ".jpg",
    "exif-rotated": ".jpg",
    "icc-profile": ".jpg",
    "animated-gif": ".gif",
    "animated-webp": ".webp",
    "gif-bomb": ".gif",
    "corrupt-jpeg": ".jpg",
    "all-nan-float": ".tiff",
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    return Worker("tiny", ["cpu"], limits=LIMITS, output_dir=tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def server(worker):
    with serving(worker, LIMITS, max_file_size="3mb") as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def corpus_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}{SUFFIX.get(name, '.png')}"
    path.write_bytes(CORPUS[name][0])
    return path


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_files_through_the_cli(capsys, tmp_path, name):
    source = corpus_file(tmp_path, name)
    fragment = CORPUS[name][1]
    code = cli_main([str(source), "-p", "ink", "-o", str(tmp_path / "out.png"), "--model", "tiny", "--steps", "3", "--size", "64"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "stylizing" not in line]
    if fragment is None:
        assert code == 0, err
        assert Image.open(tmp_path / "out.png").mode == "RGB"
        if name.startswith("animated") or name == "apng":
            assert any("first frame" in line for line in lines)
    else:
        assert code == 2
        assert len(lines) == 1 and lines[0].startswith("stylizer: error:") and fragment in lines[0], err


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_files_through_the_api(client, tmp_path, picture_path, name):
    source = corpus_file(tmp_path, name)
    fragment = CORPUS[name][1]
    if fragment is None:
        outputs = client.predict(image=handle_file(str(source)), prompt="ink", **FAST, api_name="/stylize")
        assert "Done" in outputs[1]
        if name.startswith("animated") or name == "apng":
            assert "first frame" in outputs[1]
    else:
        with pytest.raises(AppError, match="(?i)" + fragment):
            client.predict(image=handle_file(str(source)), prompt="ink", **FAST, api_name="/stylize")
        ok = client.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")
        assert "Done" in ok[1]


def test_exif_orientation_is_applied_end_to_end(client, tmp_path):
    source = corpus_file(tmp_path, "exif-rotated")  # stored 64x32, displayed 32x64
    outputs = client.predict(image=handle_file(str(source)), prompt="ink", **FAST, api_name="/stylize")
    assert Image.open(result_path(outputs[0])).size == (32, 64)


def test_colour_profiles_are_applied_end_to_end(client, tmp_path):
    source = corpus_file(tmp_path, "icc-profile")  # red pixels, tagged with a profile that makes them blue
    outputs = client.predict(image=handle_file(str(source)), prompt="ink", **FAST, api_name="/stylize")
    before = outputs[2]["value"] if isinstance(outputs[2], dict) else outputs[2]
    r, g, b = Image.open(result_path(before[0])).convert("RGB").getpixel((5, 5))
    assert b > 150 and r < 80, "the picture shown as 'before' ignores its colour profile"


@pytest.mark.parametrize(
    "prompt, check",
    [
        ("   ", "error:Prompt is empty"),
        ("ink " * 90, "status:too long for CLIP"),
        ("ink\x00\x07 wash\x1b", "settings:ink wash"),
    ],
    ids=["whitespace", "too-long", "control-chars"],
)
def test_prompts(client, picture_path, prompt, check):
    kind, expected = check.split(":", 1)
    if kind == "error":
        with pytest.raises(AppError, match=expected):
            client.predict(image=handle_file(picture_path), prompt=prompt, **FAST, api_name="/stylize")
        return
    outputs = client.predict(image=handle_file(picture_path), prompt=prompt, **FAST, api_name="/stylize")
    if kind == "status":
        assert expected in outputs[1]
    else:
        assert json.loads(outputs[5])["prompt"] == expected


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"w_dir": float("nan")}, "w_dir must be a finite number"),
        ({"strength": float("inf")}, "strength must be"),
        ({"guidance_scale": float("-inf")}, "guidance_scale must be"),
        ({"w_tv": -3}, "w_tv must be between 0 and"),
        ({"steps": 10**9}, "steps must be between 1 and 500"),
        ({"seed": -1}, "seed must be between"),
        ({"start": "sideways"}, "start must be one of noise, invert"),
        ({"size": "huge"}, "size must be a number"),
        ({"n_patches": 2.5}, "n_patches must be a whole number"),
        ({"steps": 10**400}, "steps must be between 1 and 500, got a number of 401 digits"),
        ({"seed": 2**64}, "seed must be between 0 and 4294967295, got 18446744073709551616"),
        ({"seed": float("nan")}, "seed must be a finite number"),
        ({"randomize_seed": "yes"}, "randomize_seed must be true or false"),
    ],
    ids=["nan", "inf", "-inf", "negative", "huge", "negative-seed", "bad-choice", "string", "fraction", "400-digits", "seed-2**64",
         "seed-nan", "truthy-string"],
)  # fmt: skip
def test_bad_numbers_through_the_raw_api(server, picture_path, overrides, fragment):
    text = call_raw(server, api_args(upload(server, picture_path), **overrides))
    assert "event: error" in text and fragment.lower() in text.lower(), text[-500:]
    assert "Traceback" not in text


def error_message(text: str) -> str:
    """The message of an SSE stream's error event."""
    assert "event: error" in text, text[-300:]
    return json.loads(text.split("event: error", 1)[1].split("data:", 1)[1].strip().splitlines()[0])["error"] or ""


def server_paths(tmp_path: Path) -> dict[str, str]:
    """Paths a hostile caller may name: a picture on the server's disk, nothing, a system file, a way out of the upload folder, a link out of it."""
    upload_folder = Path(get_upload_folder())
    upload_folder.mkdir(parents=True, exist_ok=True)
    link = upload_folder / f"link-{tmp_path.name}.jpg"
    link.unlink(missing_ok=True)
    link.symlink_to(ROOT / "assets" / "astronaut.jpg")
    return {
        "server picture": str(ROOT / "assets" / "astronaut.jpg"),
        "missing": str(tmp_path / "no-such-picture.png"),
        "system file": "/etc/passwd",
        "dot-dot": str(upload_folder / ".." / ".." / "etc" / "passwd"),
        "link out of the upload folder": str(link),
    }


@pytest.mark.parametrize("parameter", ["image", "mask", "style_image"])
@pytest.mark.parametrize("meta", [True, False], ids=["with-meta", "without-meta"])
def test_the_api_reads_no_file_a_client_did_not_upload_and_says_the_same_of_each(server, picture_path, tmp_path, parameter, meta):
    """Whatever a path names (a picture, nothing, a system file, a way out), the answer is one and the same message, and nothing of it."""
    picture = upload(server, picture_path)
    messages = {}
    for kind, path in server_paths(tmp_path).items():
        smuggled = {"path": path, **({"meta": {"_type": "gradio.FileData"}} if meta else {})}
        text = call_raw(server, api_args(picture, **{parameter: smuggled}) if parameter != "image" else api_args(smuggled))
        messages[kind] = error_message(text)
        assert "root:" not in text and "Traceback" not in text and " MB" not in text and " px" not in text, text[-300:]
    assert len(set(messages.values())) == 1, messages  # the same words whether, or what, the file is
    if not meta:  # our guard; with meta, Gradio's own refuses first, in its words
        assert set(messages.values()) == {NOT_UPLOADED.format(what=PICTURE_NAMES[parameter])}
    assert "Done" in Client(server, verbose=False).predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]


def test_through_gradio_client_a_server_side_picture_is_unreachable(server, picture_path):
    """gradio_client uploads a path it can read (its own file, not the server's); the server's own files,
    named by a URL into its file route, are refused (Gradio downloads only public addresses, and those
    files were never uploaded)."""
    inside = f"{server}gradio_api/file={ROOT / 'assets' / 'astronaut.jpg'}"
    with pytest.raises((AppError, ValueError, httpx.HTTPError)):
        Client(server, verbose=False).predict(image=handle_file(inside), prompt="ink", **FAST, api_name="/stylize")
    assert "Done" in Client(server, verbose=False).predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]


def test_a_malformed_data_url_gets_one_line(server, picture_path):
    text = call_raw(server, api_args({"path": "data:image/png;base64,@@@not base64@@@", "url": "data:image/png;base64,@@@not base64@@@"}))
    message = error_message(text)
    assert message == NOT_BASE64.format(what="picture") and len(message) < 120


def test_a_seed_too_large_for_the_client_gets_the_range_message_not_a_cancelled_job(client, picture_path):
    with pytest.raises(AppError, match="(?i)seed must be between 0 and 4294967295, got 18446744073709551616"):
        client.predict(image=handle_file(picture_path), prompt="ink", seed=2**64, **FAST, api_name="/stylize")


def test_other_jobs_files_cannot_be_fetched_by_guessing(server, worker, picture_path):
    raw = Client(server, verbose=False, download_files=False)  # the server's own file references
    outputs = raw.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")
    served = (outputs[4]["value"] if isinstance(outputs[4], dict) else outputs[4])[0]
    worker_files = sorted(worker.outputs.root.glob("job-*/stylized.png"))
    assert worker_files
    with httpx.Client(base_url=server, timeout=30) as http:
        assert http.get(served["url"]).status_code == 200  # what the page links to is served
        # The worker's own folder is never served, whatever the path.
        assert http.get(f"/gradio_api/file={worker_files[-1]}").status_code in (403, 404)
        # A served file's URL holds an unguessable hash; changing it finds nothing.
        cached = Path(served["path"])
        guessed = cached.parent.with_name(cached.parent.name[:-4] + "0000") / cached.name
        assert guessed != cached
        assert http.get(f"/gradio_api/file={guessed}").status_code in (403, 404)
        assert http.get("/gradio_api/file=/etc/passwd").status_code in (403, 404)


def test_eight_clients_are_served_in_order_without_mix_ups(server, picture_path):
    jobs = []
    for i in range(8):
        client = Client(server, verbose=False)
        jobs.append(client.submit(image=handle_file(picture_path), prompt=f"style number {i}", seed=100 + i, **FAST, api_name="/stylize"))
        wait_until_queued(jobs[-1])
    finished: list[int] = []
    lock = threading.Lock()

    def wait(i, job):
        job.result(timeout=300)
        with lock:
            finished.append(i)

    threads = [threading.Thread(target=wait, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(320)
    assert finished == list(range(8))
    for i, job in enumerate(jobs):
        settings = json.loads(job.outputs()[-1][5])
        assert settings["prompt"] == f"style number {i}" and settings["seed"] == 100 + i


def test_a_client_that_disconnects_frees_the_worker(server, worker, picture_path, client):
    script = (
        "import os, sys\n"
        "from gradio_client import Client, handle_file\n"
        f"job = Client({server!r}, verbose=False).submit(image=handle_file({picture_path!r}), prompt='ink', size=64, steps=400, strength=1.0, api_name='/stylize')\n"
        "seen = 0\n"
        "for outputs in job:\n"
        "    seen += 'Step' in str(outputs[1])\n"
        "    if seen >= 3:\n"
        "        print('running', flush=True)\n"
        "        os._exit(0)\n"
    )
    passes: list[int] = []
    hook = worker.replicas["cpu"].backend.unet.register_forward_hook(lambda *_: passes.append(1))
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
        gone = len(passes)
        assert "running" in proc.stdout, proc.stderr
        assert wait_until_idle(worker), "the job kept running after its client went away"
    finally:
        hook.remove()
    # The job has 800 UNet passes (inversion, then 400 steps); the server notices the closed
    # connection at its next message, so only a few more run.
    assert len(passes) - gone <= 10, f"{len(passes) - gone} UNet passes ran after the client went away"
    assert "Done" in client.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]


def test_out_of_memory_is_reported_and_the_server_recovers(client, worker, picture_path, monkeypatch):
    real = worker_module.stylize
    assert "Done" in client.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]
    assert len(worker.caches["cpu"]) > 0  # the picture is prepared for the next job

    def exhausted(models, request, on_step=None, **hooks):
        on_step(1, request.config.denoise_steps)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        yield  # a generator, like the real sampler

    monkeypatch.setattr(worker_module, "stylize", exhausted)
    with pytest.raises(AppError, match="ran out of memory: lower the resolution or the number of patches"):
        client.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")
    assert len(worker.caches["cpu"]) == 0  # out of memory empties the cache of prepared pictures
    monkeypatch.setattr(worker_module, "stylize", real)
    assert "Done" in client.predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]


@pytest.mark.parametrize("phase", ["inverting", "guided"])
def test_closing_a_job_stops_it_within_one_network_pass(tmp_path, picture_path, phase):
    """Stop (closing the job's updates) acts between two UNet passes, during the inversion too."""
    worker = Worker("tiny", ["cpu"], limits=Limits(), output_dir=tmp_path)
    passes: list[int] = []
    hook = worker.replicas["cpu"].backend.unet.register_forward_hook(lambda *_: passes.append(1))
    try:
        updates = worker.run(worker.check(picture_path, {"prompt": "ink", "size": 64, "steps": 400, "strength": 1.0, "start": "invert"}))
        for update in updates:
            if update.step >= 3 and update.inverting == (phase == "inverting"):
                break
        else:
            pytest.fail(f"the job ended without a {phase} update")
        before = len(passes)
        updates.close()
        # The pass in flight may finish, and one more may start if Stop lands between two passes.
        assert len(passes) - before <= 2
    finally:
        hook.remove()
    assert wait_until_idle(worker, 5.0)


def test_jobs_over_the_wall_time_limit_stop_with_a_message(tmp_path, picture_path):
    slow = Worker("tiny", ["cpu"], limits=Limits(job_timeout_s=0.5), output_dir=tmp_path)
    with pytest.raises(Exception, match="longer than the 0.5 s limit"):
        for _ in slow.run(slow.check(picture_path, {"prompt": "ink", "size": 64, "steps": 400, "strength": 1.0})):
            pass
    assert wait_until_idle(slow, 5.0)


def test_old_job_folders_are_deleted(tmp_path, picture_path):
    short = Worker("tiny", ["cpu"], limits=Limits(output_ttl_s=0.0), output_dir=tmp_path)
    for _ in range(2):
        list(short.run(short.check(picture_path, {"prompt": "ink", **FAST})))
        time.sleep(0.05)
    assert len(list(tmp_path.glob("job-*"))) == 1


@pytest.mark.soak
def test_soak_resident_memory_levels_off(tmp_path, picture_path):
    """100 consecutive jobs against the app in a process of its own: after the warm-up third its resident
    memory rises less than bench.soak's bound and has levelled off (see bench/soak.py for the judgement)."""
    jobs = int(os.environ.get("STYLIZER_SOAK_JOBS", "100"))
    rss = rss_series(picture_path, jobs, tmp_path)
    judged = verdict(rss)
    print(f"soak: {jobs} jobs, server RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB; {judged}")
    print("soak RSS per job (MB):", " ".join(f"{value:.0f}" for value in rss))
    assert judged.ok, f"resident memory: {judged} (bound {BOUND_MB} MB, step {STEP_MB} MB)"


@pytest.mark.parametrize(
    "shape, ok",
    [
        ("flat", True),
        ("one allocator step in the last third", True),
        ("a step in the warm-up, then flat", True),
        ("a steady leak of 1 MB a job", False),
        ("flat, then growing in the last third", False),
    ],
)
def test_the_soak_verdict_passes_steps_and_plateaus_and_fails_trends(shape, ok):
    jobs, base = 99, 1100.0
    series = {
        "flat": [base + (i % 3) * 0.5 for i in range(jobs)],
        "one allocator step in the last third": [base + (STEP_MB * 0.6 if i >= 75 else 0.0) for i in range(jobs)],
        "a step in the warm-up, then flat": [base + (30.0 if i >= 10 else 0.0) for i in range(jobs)],
        "a steady leak of 1 MB a job": [base + 1.0 * i for i in range(jobs)],
        "flat, then growing in the last third": [base + max(0.0, i - 66) * 1.5 for i in range(jobs)],
    }[shape]
    assert verdict(series).ok is ok, verdict(series)


@pytest.mark.parametrize("size, works", [(124, True), (120, False)], ids=["at-the-limit", "below-it"])
def test_a_thin_picture_through_the_api_works_at_the_limit_and_gets_the_limit_below_it(client, tmp_path, size, works):
    thin = tmp_path / "thin.png"
    make_image(16, 128).save(thin)
    if works:
        assert "Done" in client.predict(image=handle_file(str(thin)), prompt="ink", size=size, steps=2, api_name="/stylize")[1]
        return
    with pytest.raises(AppError, match="px on its short side; it needs at least 16 px: set size to 124 or more"):
        client.predict(image=handle_file(str(thin)), prompt="ink", size=size, steps=2, api_name="/stylize")


def test_a_server_removes_its_private_output_folder_on_a_clean_exit_and_stale_ones_at_start(tmp_path, picture_path):
    """Ctrl-C (SIGINT) ends the app cleanly and its results' folder goes with it; a dead process's old folder goes at the next start."""
    temp = tmp_path / "temp"
    temp.mkdir()
    dead = temp / f"{PRIVATE_PREFIX}999999999-old"  # no process has this id
    (dead / "job-1").mkdir(parents=True)
    young = temp / f"{PRIVATE_PREFIX}999999998-young"
    young.mkdir()
    alive = temp / f"{PRIVATE_PREFIX}{os.getpid()}-running"
    alive.mkdir()
    hour_ago = time.time() - 3600
    for folder in (dead, alive):
        os.utime(folder, (hour_ago, hour_ago))
    env = {"TMPDIR": str(temp), "STYLIZER_OUTPUT_TTL": "600"}
    with app_process(tmp_path / "app.log", env=env) as (proc, url):
        assert "Done" in Client(url, verbose=False).predict(image=handle_file(picture_path), prompt="ink", **FAST, api_name="/stylize")[1]
        [own] = [f for f in temp.glob(f"{PRIVATE_PREFIX}{proc.pid}-*")]
        assert list(own.glob("job-*/stylized.png"))
        assert not dead.exists() and young.exists() and alive.exists()  # only a dead process's folder past its time to live goes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) in (0, 130)  # Gradio closes the server on Ctrl-C and the app returns
    assert not own.exists()
