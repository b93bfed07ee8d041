"""The command line: end to end in a real process, and its error handling in-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylizer.cli import main
from stylizer.engine.objective import StyleObjective
from stylizer.engine.tensors import to_pil

from .helpers import BAD_MASKS, make_image, save_picture

ROOT = Path(__file__).resolve().parents[1]


def test_cli_end_to_end_with_json_and_frames(tmp_path, picture_path, tiny_models):
    out, gif = tmp_path / "out.png", tmp_path / "frames.gif"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylizer",
            picture_path,
            "-p",
            "drawing with black ink",
            "-o",
            str(out),
            "--model",
            "tiny",
            "--steps",
            "10",
            "--seed",
            "3",
            "--json",
            "--frames",
            str(gif),
            "--preview-every",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["output"] == str(out)
    assert report["settings"]["prompt"] == "drawing with black ink" and report["settings"]["seed"] == 3
    assert report["settings"]["clip"] == tiny_models.preset.clip  # the --clip name, which reads back
    assert set(report["losses"]) == {"dir", "patch", "content", "tv"}
    assert "random weights" in proc.stderr and "Traceback" not in proc.stderr
    with Image.open(out) as img:
        assert img.size == (64, 48)
    with Image.open(gif) as anim:
        assert anim.n_frames == 4  # 6 steps: frames after steps 1, 2, 4 and 6


def test_an_over_long_prompt_runs_with_a_note(capsys, tmp_path, picture_path):
    essay = "a watercolour of a quiet harbour at dawn, soft light on the water, " * 45
    code, out, err = run_main(capsys, picture_path, "-p", essay, "-o", str(tmp_path / "o.png"), "--model", "tiny", "--steps", "2", "--json")
    assert code == 0, err
    assert "the prompt is too long for CLIP" in err and "the end was cut off" in err
    assert json.loads(out)["settings"]["prompt"] == essay.strip()


def test_preview_writes_the_quick_small_version(capsys, tmp_path, picture_path):
    out = tmp_path / "preview.png"
    args = ("-p", "ink", "-o", str(out), "--model", "tiny", "--json", "--preview", "--preview-size", "32", "--preview-steps", "4")
    code, stdout, err = run_main(capsys, picture_path, *args)
    assert code == 0, err
    settings = json.loads(stdout)["settings"]
    assert (settings["size"], settings["steps"]) == (32, 4)
    with Image.open(out) as img:
        assert img.size == (32, 24)


def test_json_losses_are_measured_on_the_saved_image(monkeypatch, capsys, tmp_path, picture_path):
    """The reported losses are the objective's measurement of the very image written to --output."""
    measured = []
    measure = StyleObjective.measure

    def recording_measure(self, image):
        losses = measure(self, image)
        measured.append((image, losses))
        return losses

    monkeypatch.setattr(StyleObjective, "measure", recording_measure)
    out = tmp_path / "out.png"
    code, stdout, _ = run_main(
        capsys, picture_path, "-p", "ink", "-o", str(out), "--model", "tiny", "--steps", "10", "--preview-every", "2", "--json"
    )
    assert code == 0
    [(image, losses)] = measured
    assert json.loads(stdout)["losses"] == losses
    assert image.min() >= 0 and image.max() <= 1  # the clamped result, as saved
    with Image.open(out) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(to_pil(image * 2 - 1)))


def write(name: str, data: bytes):
    """An input factory: writes ``data`` to ``name`` in the test's folder."""

    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


def run_main(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "make_input, extra, fragment",
    [
        (lambda p: p / "missing.png", [], "no such image file"),
        (write("empty.png", b""), [], "empty"),
        (write("fake.png", b"hello"), [], "not an image"),
        (None, ["--steps", "0"], "steps must be between"),
        (None, ["--steps", "9" * 400], "steps must be between 1 and 500, got a number of 400 digits"),
        (None, ["--seed", str(2**64)], "seed must be between 0 and 4294967295, got 18446744073709551616"),
        (None, ["--steps", "many"], "invalid int value"),
        (None, ["--mode", "slow"], "invalid choice"),
        (None, ["--w-dir", "nan"], "w_dir must be a finite number"),
        (None, ["--model", "no such model"], "unknown model"),
        (None, ["-p", "b", "-p", "c", "-p", "d", "-p", "e"], "at most 4 styles blend"),
        (None, ["--prompt-weights", "1,0,2"], "3 weights for 1 prompts"),
        (None, ["--prompt-weights", "0"], "the style weights are all 0"),
        (None, ["--prompt-weights", "-1"], "weight_1 must be between 0"),
        (None, ["--mask", "/nowhere/mask.png"], "the mask: no such image file"),
        (None, ["--style-image", "/nowhere/style.png"], "the style picture: no such image file"),
        (None, ["--device", "cuda:7"], "no CUDA GPU"),
        (None, ["--frames", "/nowhere/at/all/trajectory.gif"], "--frames folder /nowhere/at/all does not exist"),
        (None, ["--frames", "trajectory.txt"], "must end in .gif"),
    ],
    ids=[
        "missing",
        "empty",
        "not-image",
        "steps-range",
        "steps-400-digits",
        "seed-2**64",
        "steps-type",
        "mode",
        "nan",
        "model",
        "five-prompts",
        "weights-count",
        "weights-zero",
        "weights-negative",
        "mask-missing",
        "style-missing",
        "device",
        "frames-folder",
        "frames-suffix",
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, picture_path, make_input, extra, fragment):
    source = str(make_input(tmp_path)) if make_input else picture_path
    code, out, err = run_main(capsys, source, "-p", "ink", "-o", str(tmp_path / "o.png"), "--model", "tiny", "--steps", "2", *extra)
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], err


def test_an_empty_prompt_without_a_style_picture_is_refused(capsys, tmp_path, picture_path):
    code, _, err = run_main(capsys, picture_path, "-p", " ", "-o", str(tmp_path / "o.png"), "--model", "tiny")
    assert code == 2 and "prompt is empty" in err and "style picture" in err


@pytest.mark.parametrize("kind", list(BAD_MASKS))
def test_bad_masks_exit_2_with_one_line(capsys, tmp_path, picture_path, kind):
    mask, fragment = BAD_MASKS[kind]
    path = save_picture(mask, tmp_path / "mask.png")
    code, out, err = run_main(capsys, picture_path, "-p", "ink", "-o", str(tmp_path / "o.png"), "--model", "tiny", "--mask", str(path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and fragment in err, err


@pytest.mark.parametrize(
    "paths, fragment",
    [
        (("-o", "o.xyz"), "must end in one of"),
        (("-o", "nowhere/o.png"), "does not exist"),
        (("-o", "o.png", "--frames", "frames.mp4"), "--frames"),
    ],
)
def test_bad_output_paths_are_rejected_before_any_work(monkeypatch, capsys, tmp_path, picture_path, paths, fragment):
    """Loading the models or decoding the picture would fail this test: the option error must come first."""
    import stylizer.loading
    import stylizer.request

    def work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(stylizer.loading, "load_models", work)
    monkeypatch.setattr(stylizer.request, "check_request", work)
    flag, name, *rest = paths
    code, _, err = run_main(capsys, picture_path, "-p", "ink", flag, str(tmp_path / name), *rest, "--model", "tiny")
    assert code == 2 and fragment in err, err


def test_missing_weights_exit_2_naming_the_model(capsys, tmp_path, picture_path):
    code, _, err = run_main(capsys, picture_path, "-p", "ink", "-o", str(tmp_path / "o.png"), "--model", "bedroom-256")
    assert code == 2
    assert "google/ddpm-ema-bedroom-256" in err and "download" in err and len(err.strip().splitlines()) == 1


def test_an_output_that_is_the_input_is_refused_before_any_work_unless_overwrite(capsys, tmp_path, picture_path):
    before = Path(picture_path).read_bytes()
    spelled_otherwise = str(Path(picture_path).parent / "." / Path(picture_path).name)
    for output in (picture_path, spelled_otherwise):
        code, _, err = run_main(capsys, picture_path, "-p", "ink", "-o", output, "--model", "tiny", "--steps", "2")
        assert code == 2 and "is the input: the result would replace it" in err and "--overwrite" in err
        assert Path(picture_path).read_bytes() == before
    code, _, err = run_main(capsys, picture_path, "-p", "ink", "-o", picture_path, "--model", "tiny", "--steps", "2", "--overwrite")
    assert code == 0 and Path(picture_path).read_bytes() != before, err


def test_an_output_that_is_a_folder_is_refused_before_any_work(monkeypatch, capsys, tmp_path, picture_path):
    import stylizer.loading

    monkeypatch.setattr(stylizer.loading, "load_models", lambda *a, **k: pytest.fail("the models loaded before -o was checked"))
    code, _, err = run_main(capsys, picture_path, "-p", "ink", "-o", str(tmp_path), "--model", "tiny")
    assert code == 2 and f"output {tmp_path} is a folder: name the file to write" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "size, picture, works",
    [(124, (16, 128), True), (120, (16, 128), False), (47, (96, 32), True), (46, (96, 32), False), (32, (96, 32), False)],
    ids=["16x128-at-the-limit", "16x128-below", "96x32-at-the-limit", "96x32-below", "96x32-at-the-smallest-size"],
)
def test_thin_pictures_work_down_to_16_px_at_working_size_and_are_refused_below_with_the_limit(capsys, tmp_path, size, picture, works):
    source = tmp_path / "thin.png"
    make_image(*picture).save(source)
    code, _, err = run_main(
        capsys, str(source), "-p", "ink", "-o", str(tmp_path / "out.png"), "--model", "tiny", "--size", str(size), "--steps", "2"
    )
    if works:
        assert code == 0, err
        with Image.open(tmp_path / "out.png") as out:
            assert min(out.size) == 16
    else:
        lines = [line for line in err.splitlines() if line.startswith("stylizer:") and "warning" not in line]
        assert code == 2 and len(lines) == 1 and "it needs at least 16 px" in lines[0] and "size to" in lines[0], err
