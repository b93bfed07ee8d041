"""The table of knobs: every StyleConfig field reaches the command line, the page and the /stylize API, and back."""

import dataclasses

import pytest
from gradio_client import Client, handle_file

from stylizer.cli import main
from stylizer.cli.options import blend_settings
from stylizer.cli.stylize import build_parser
from stylizer.config import PROMPT_FIELDS, WEIGHT_FIELDS, StyleConfig, knobs
from stylizer.serving.jobs import JobUpdate, ModelInfo
from stylizer.ui import api_parameters, build_demo

from .apphelpers import served
from .helpers import FakeJobs, changed_settings

INFO = ModelInfo("tiny-latent", "latent", "tiny-clip", ["cpu"], True, {"size": 64}, "test models")
# The first wave's /stylize parameters, in order: later settings may only come after them.
FIRST_WAVE_API = [
    "image", "prompt", "reference", "w_dir", "w_patch", "w_content", "w_tv", "steps", "strength", "start", "mode",
    "guidance_scale", "cfg_scale", "n_patches", "patch_size", "threshold", "size", "seed", "randomize_seed",
]  # fmt: skip


def test_every_field_has_a_knob_and_every_knob_a_field():
    assert list(knobs()) == [f.name for f in dataclasses.fields(StyleConfig)]


def test_every_setting_is_an_option_of_the_command_line():
    """Each knob has an option of its own, except the blend's: repeated -p and --prompt-weights set those."""
    settings = changed_settings()
    argv = ["in.png", "-o", "out.png"]
    for action in build_parser()._actions:
        value = settings.get(action.dest)
        if action.dest in PROMPT_FIELDS or action.dest not in settings:
            continue
        if isinstance(value, bool):
            argv.append(action.option_strings[0] if value else action.option_strings[1])
        else:
            argv += [action.option_strings[-1], str(value)]
    for name in PROMPT_FIELDS:
        argv += ["-p", settings[name]]
    argv += ["--prompt-weights", ",".join(str(settings[name]) for name in WEIGHT_FIELDS)]
    args = build_parser().parse_args(argv)
    parsed = {name: getattr(args, name) for name in settings if name not in PROMPT_FIELDS and hasattr(args, name)}
    parsed.update(blend_settings(args.prompt, args.prompt_weights))
    assert parsed == settings
    assert {name for name, knob in knobs().items() if not knob.cli} <= {*PROMPT_FIELDS, *WEIGHT_FIELDS}


def test_help_lists_every_setting_of_the_command_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert all(flag in out for name, knob in knobs().items() if knob.cli for flag in knob.flags(name))
    assert "--guide-decoder {vae,taesd}" in out and "2 % of the long side" in out


def test_every_setting_is_a_control_on_the_page_and_an_api_parameter_in_a_stable_order(tmp_path, picture_path):
    names = [name for name, knob in knobs().items() if knob.api]
    assert names == list(knobs())  # every setting is on the page today; a knob with api=False would need a reason
    demo = build_demo(FakeJobs(lambda image, settings: iter(()), INFO))
    labels = {c.get("props", {}).get("label") for c in demo.config["components"]}
    assert {knobs()[name].label for name in names} <= labels
    api = [p["parameter_name"] for p in demo.get_api_info()["named_endpoints"]["/stylize"]["parameters"]]
    assert api == api_parameters() and api[: len(FIRST_WAVE_API)] == FIRST_WAVE_API
    assert set(names) <= set(api)


@pytest.mark.parametrize("backend", ["latent", "pixel"])
def test_latent_only_settings_are_disabled_on_a_pixel_model_page(backend):
    latent_only = {knob.label for knob in knobs().values() if knob.latent_only}
    assert {knobs()["cfg_scale"].label, knobs()["guide_decoder"].label} <= latent_only
    demo = build_demo(FakeJobs(lambda image, settings: iter(()), dataclasses.replace(INFO, backend=backend)))
    controls = {c["props"].get("label"): c["props"] for c in demo.config["components"] if "props" in c}
    assert {label: controls[label]["interactive"] for label in latent_only} == dict.fromkeys(latent_only, backend == "latent")


def test_every_setting_sent_to_the_api_reaches_the_job(picture_path):
    received = []

    def run(image, settings):
        received.append(dict(settings))
        yield JobUpdate(1, 1, queued=True)

    settings = changed_settings()
    with served(build_demo(FakeJobs(run, INFO))) as url:
        Client(url, verbose=False).predict(image=handle_file(picture_path), **settings, api_name="/stylize")
    assert received == [settings]
