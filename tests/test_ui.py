"""The page's wiring, driven through gradio_client with a fake run function (no models)."""

import json
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from stylizer.config import Limits
from stylizer.errors import InputError
from stylizer.serving.jobs import JobResult, JobUpdate, ModelInfo
from stylizer.ui import build_demo
from stylizer.ui.requests import PageRequests
from stylizer.ui.settings import apply_settings, page_knobs
from stylizer.ui.stream import stream

from .apphelpers import result_path, served
from .helpers import FakeJobs

INFO = ModelInfo("tiny", "pixel", "tiny-clip", ["cpu"], True, {"size": 64}, "test models")
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def fake_run(calls, tmp_path):
    """A run function that streams four coloured previews and a result, recording its settings."""

    def run(image, settings):
        calls.append((image, dict(settings)))
        if not settings.get("prompt"):
            raise InputError("prompt is empty")
        total = 4
        for step, colour in enumerate(COLOURS[:3], start=1):
            time.sleep(0.05)
            yield JobUpdate(step, total, {"dir": 1.0 / step}, Image.new("RGB", (32, 24), colour))
        final = Image.new("RGB", (32, 24), COLOURS[3])
        png, gif = tmp_path / "r.png", tmp_path / "t.gif"
        final.save(png)
        final.save(gif)
        result = JobResult(final, final, png, gif, {**settings, "model": "tiny"}, {"dir": 0.1}, 0.2)
        yield JobUpdate(total, total, {"dir": 0.1}, final, result)

    return run


@pytest.fixture
def fake_app(tmp_path, picture_path):
    calls = []
    demo = build_demo(FakeJobs(fake_run(calls, tmp_path), INFO))
    with served(demo) as url:
        yield Client(url, verbose=False), calls


def test_api_names_image_prompt_reference_and_gives_the_rest_defaults(fake_app):
    client, _ = fake_app
    params = client.view_api(return_format="dict")["named_endpoints"]["/stylize"]["parameters"]
    names = [p["parameter_name"] for p in params]
    assert names[:3] == ["image", "prompt", "reference"]
    assert set(page_knobs()) <= set(names)
    assert all(p["parameter_has_default"] for p in params if p["parameter_name"] not in ("image", "prompt"))


def test_frames_stream_to_the_client(fake_app, picture_path):
    client, calls = fake_app
    job = client.submit(image=handle_file(picture_path), prompt="ink", w_content=321.0, api_name="/stylize")
    seen = []
    for outputs in job:
        path = result_path(outputs[0])
        if path and path not in seen:
            seen.append(path)
    final = job.outputs()[-1]
    colours = [Image.open(p).convert("RGB").getpixel((1, 1)) for p in seen]
    assert colours == COLOURS  # three previews, then the result, in order
    settings = json.loads(final[5])
    assert settings["prompt"] == "ink" and settings["w_content"] == 321.0
    assert calls[-1][1]["w_content"] == 321.0 and calls[-1][0].endswith(".png")


def test_user_errors_arrive_as_app_errors_and_the_server_stays_up(fake_app, picture_path):
    client, _ = fake_app
    with pytest.raises(AppError, match="Prompt is empty"):
        client.predict(image=handle_file(picture_path), prompt="", api_name="/stylize")
    outputs = client.predict(image=handle_file(picture_path), prompt="ink", api_name="/stylize")
    assert "Done" in outputs[1]


def test_random_seed_is_drawn_and_reported(fake_app, picture_path):
    client, calls = fake_app
    outputs = client.predict(image=handle_file(picture_path), prompt="ink", seed=5, randomize_seed=True, api_name="/stylize")
    drawn = calls[-1][1]["seed"]
    assert outputs[6] == drawn and json.loads(outputs[5])["seed"] == drawn


def test_apply_settings_restores_every_knob_and_rejects_bad_json():
    settings = {"prompt": "neon light", "reference": "a photo", "steps": 12, "w_tv": 9.0, "seed": 42, "model": "tiny"}
    values = dict(zip(page_knobs(), apply_settings(json.dumps(settings), Limits())))
    assert values["prompt"] == "neon light" and values["steps"] == 12 and values["w_tv"] == 9.0 and values["seed"] == 42
    import gradio as gr

    with pytest.raises(gr.Error, match="not valid JSON"):
        apply_settings("{oops", Limits())
    with pytest.raises(gr.Error, match="Steps must be between"):
        apply_settings(json.dumps({"steps": -1}), Limits())
    with pytest.raises(gr.Error, match="Steps must be between 1 and 20"):  # this server's cap, not the default
        apply_settings(json.dumps({"steps": 30}), Limits(max_steps=20))


def test_page_names_the_model_and_flags_untrained_weights():
    demo = build_demo(FakeJobs(lambda image, settings: iter(()), INFO))
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in demo.config["components"])
    assert "`tiny`" in texts and "untrained" in texts and "noise" in texts
    trained = build_demo(
        FakeJobs(
            lambda image, settings: iter(()), ModelInfo("sd15", "latent", "ViT-B-32/openai", ["cuda:0"], False, {"size": 512}, "SD 1.5")
        )
    )
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in trained.config["components"])
    assert "sd15" in texts and "untrained" not in texts


def test_stop_applies_to_runs_clicked_before_it_only():
    stops = PageRequests()
    assert not stops.requested("page")  # an API caller that never pressed anything
    stops.arm("page")
    assert not stops.requested("page")
    stops.stop("page")
    assert stops.requested("page") and not stops.requested("other page")
    stops.arm("page")  # Stylize again: the earlier press is spent
    assert not stops.requested("page")
    stops.stop("page")
    stops.forget("page")
    assert not stops.requested("page")


def test_a_stopped_run_closes_its_job_and_says_stopped(tmp_path):
    """Stop ends the event normally (no error state), closing the job so the worker cancels it."""
    closed, pressed = [], []

    def run(image, settings):
        try:
            for step in range(1, 100):
                yield JobUpdate(step, 99, {"dir": 1.0})
        finally:
            closed.append(True)

    def progress(*args, **kwargs):
        if len(pressed) == 0 and args[0][0] == 3:
            pressed.append(True)  # Stop pressed while step 3 is shown

    statuses = [update["status"] for update in stream(FakeJobs(run, INFO), "in.png", {"seed": 1}, progress, lambda: bool(pressed))]
    assert "Stopped" in statuses[-1] and closed == [True]
    assert sum("Step" in str(s) for s in statuses) == 3  # the job went no further than the next update


def test_a_run_stopped_while_queued_never_starts():
    started = []

    def run(image, settings):
        started.append(True)
        yield JobUpdate(1, 1)

    statuses = [update["status"] for update in stream(FakeJobs(run, INFO), "in.png", {"seed": 1}, lambda *a, **k: None, lambda: True)]
    assert statuses == [statuses[-1]] and "Stopped" in statuses[-1] and not started


def test_apply_and_the_settings_table_read_back_what_the_command_line_and_batch_write(tmp_path, picture_path, capsys):
    """One settings record everywhere: --json's report and batch's NAME.json hold it under "settings", and both read back."""
    from stylizer.cli import main
    from stylizer.config import StyleConfig

    options = ["-p", "neon light", "--model", "tiny", "--size", "64", "--steps", "3", "--seed", "9", "--w-tv", "7"]
    assert main([picture_path, "-o", str(tmp_path / "one.png"), "--json", *options]) == 0
    report = capsys.readouterr().out
    assert main(["batch", picture_path, "-o", str(tmp_path / "many"), *options]) == 0
    record = (tmp_path / "many" / "input.json").read_text()
    for text in (report, record):
        written = json.loads(text)["settings"]
        assert written["model"] == "tiny" and written["clip"] == "tiny"
        config = StyleConfig.from_record(json.loads(text)).validated()
        assert (config.prompt, config.seed, config.steps, config.w_tv, config.size) == ("neon light", 9, 3, 7.0, 64)
        values = dict(zip(page_knobs(), apply_settings(text, Limits())))
        assert values == {name: getattr(config, name) for name in page_knobs()}
    assert json.loads(report)["settings"] == json.loads(record)["settings"]  # the same record, from either command
