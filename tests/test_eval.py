"""The evaluation harness on the tiny preset: report files, metric functions, slider response, option errors."""

import csv
import json
import math
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylizer.eval import Grid, Judge, metrics, run_grid, sweep_settings, write_report
from stylizer.eval import judge as judge_module
from stylizer.eval.cli import main
from stylizer.eval.dataset import DEFAULT_IMAGES, find_images, read_prompts
from stylizer.loading.build import build_clip
from stylizer.loading.presets import TINY_CLIP_ARCH

from .helpers import make_image

SMALL = {"size": 64, "steps": 10, "strength": 0.7}
SCORES = ("clip_score", "directional_similarity", "patch_clip_score", "ssim", "vgg_feature_distance", "seconds")
TINY_ARGS = ["--model", "tiny", "--device", "cpu", "--size", "64", "--steps", "10"]


@pytest.fixture(scope="module")
def judge(tiny_models):
    return Judge.for_models(tiny_models)


def meta_for(models, judge):
    return {
        "model": models.name,
        "untrained": models.untrained,
        "guide_clip": models.clip.name,
        "judge_clip": judge.clip.name,
        "device": str(models.device),
        "base": SMALL,
        "created": "now",
    }


def linked_files(out: Path) -> set[str]:
    """The files the report page shows, as paths relative to the report folder."""
    page = (out / "index.html").read_text(encoding="utf-8")
    return {unquote(src) for src in re.findall(r'src="([^"]+)"', page)}


def assert_complete_report(out: Path, runs: int) -> None:
    """Every report file exists; each table has one finite row per run; the page shows every image."""
    for name in ("index.html", "metrics.json", "metrics.csv", "style_vs_content.png"):
        assert (out / name).is_file(), name
    assert (out / "style_vs_content.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["rows"]
    with (out / "metrics.csv").open(encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(rows) == len(csv_rows) == runs
    for row, csv_row in zip(rows, csv_rows):
        assert all(math.isfinite(row[m]) and math.isfinite(float(csv_row[m])) for m in SCORES)
        assert {"image", "prompt", "setting", "w_content", "steps", "output", "content"} <= set(csv_row)
    linked = linked_files(out)
    for row in rows:
        for key in ("output", "content"):
            assert row[key] in linked
            assert (out / row[key]).is_file()


def test_runner_in_process_writes_a_complete_report(tiny_models, judge, tmp_path):
    grid = Grid(find_images()[:2], read_prompts()[:2], base=SMALL)
    rows = list(run_grid(tiny_models, judge, grid, tmp_path))
    page = write_report(rows, meta_for(tiny_models, judge), [*judge.metric_names, "seconds"], tmp_path)
    assert page == tmp_path / "index.html"
    assert_complete_report(tmp_path, runs=4)
    assert {(r["image"], r["prompt"]) for r in rows} == {(i.name, p) for i in find_images()[:2] for p in read_prompts()[:2]}


def read_report(out: Path) -> dict:
    """metrics.json of a report folder."""
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def test_command_line_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([*TINY_ARGS, "--limit", "2", "--set", "strength=0.7", "--metric-clip", "tiny", "--out", str(out)]) == 0
    streams = capsys.readouterr()
    assert streams.out.strip() == str(out / "index.html")
    assert_complete_report(out, runs=4)
    # Random weights never try LPIPS: noted in the report, but no warning about it.
    assert read_report(out)["lpips_skipped"] == {"note": judge_module.LPIPS_NOT_TRIED, "failure": False}
    assert judge_module.LPIPS_NOT_TRIED in (out / "index.html").read_text(encoding="utf-8")
    assert "LPIPS" not in streams.err


def test_command_line_sweep_draws_and_links_the_sweep_chart(tmp_path):
    out = tmp_path / "rep"
    sweep = ["--sweep", "w_content=0,200,10000"]
    assert main([*TINY_ARGS, "--limit", "1", "--set", "strength=0.7", *sweep, "--out", str(out)]) == 0
    assert_complete_report(out, runs=3)
    rows = read_report(out)["rows"]
    assert [(r["setting"], r["sweep"], r["w_content"]) for r in rows] == [
        ("w_content=0", "w_content", 0.0),
        ("w_content=200", "w_content", 200.0),
        ("w_content=10000", "w_content", 10000.0),
    ]
    chart = out / "sweep_w_content.png"
    with Image.open(chart) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(chart) as image:
        darkest, lightest = image.convert("L").getextrema()
    assert lightest - darkest > 100  # something is drawn on the white figure
    assert {"sweep_w_content.png", "style_vs_content.png"} <= linked_files(out)


def strictly_increasing(values: list[float]) -> bool:
    """Each value above the one before."""
    return all(a < b for a, b in zip(values, values[1:]))


def test_each_step_up_in_content_weight_keeps_more_of_the_content(tiny_models, judge, tmp_path):
    """The slider-response check over four weights: SSIM to the content rises at every step.

    SSIM is the per-step measure because it stays monotonic over images and seeds on the
    tiny preset. The VGG feature distance is checked end to end only: it compares
    channel-normalised features of a random VGG, which the content loss (a plain feature
    MSE) does not minimise directly, so between neighbouring weights it can wobble.
    """
    weights = [0.0, 1000.0, 3000.0, 10000.0]
    sweep = sweep_settings([f"w_content={','.join(f'{w:g}' for w in weights)}"])
    grid = Grid(find_images()[:1], ["drawing with black ink"], sweep, SMALL)
    rows = list(run_grid(tiny_models, judge, grid, tmp_path))
    assert [r["w_content"] for r in rows] == weights
    ssim = [r["ssim"] for r in rows]
    assert strictly_increasing(ssim), ssim
    assert rows[-1]["vgg_feature_distance"] < 0.8 * rows[0]["vgg_feature_distance"]


def fake_lpips(score) -> types.ModuleType:
    """A stand-in ``lpips`` package whose LPIPS model returns ``score(a, b)``."""

    class LPIPS(torch.nn.Module):
        def __init__(self, net: str, verbose: bool) -> None:
            super().__init__()

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return score(a, b)

    module = types.ModuleType("lpips")
    module.LPIPS = LPIPS
    return module


def mean_abs_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A known score: the mean absolute difference per image, shaped like LPIPS's output."""
    return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)


def fails(error: Exception) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A score function that raises ``error``."""

    def score(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise error

    return score


def test_a_working_lpips_package_is_measured_on_images_in_minus_one_to_one(tiny_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", fake_lpips(mean_abs_difference))
    lpips, skipped = judge_module.try_lpips(tiny_models.device)
    assert skipped is None
    judge = Judge(tiny_models.clip, tiny_models.vgg, lpips)
    black, white = torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)
    scores = judge.measure(black, white, "fire", "a photo")
    assert judge.metric_names[-1] == "lpips_vgg"
    assert scores["lpips_vgg"] == pytest.approx(2.0)  # black to white is -1 to 1


@pytest.mark.parametrize(
    "module, note, failure",
    [
        (None, judge_module.LPIPS_NOT_INSTALLED, False),  # None in sys.modules: `import lpips` finds no module
        (fake_lpips(fails(OSError("no VGG\nweights"))), "failed: OSError: no VGG weights", True),
        # A missing dependency of an installed package is a broken install, not an absent one.
        (fake_lpips(fails(ModuleNotFoundError("no torchvision", name="torchvision"))), "failed: ModuleNotFoundError", True),
    ],
)
def test_lpips_that_cannot_run_is_skipped_with_the_reason(module, note, failure, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", module)
    lpips, skipped = judge_module.try_lpips(torch.device("cpu"))
    assert lpips is None
    assert skipped.note.startswith("LPIPS skipped: ") and note in skipped.note and "\n" not in skipped.note
    assert skipped.failure is failure


def test_a_broken_lpips_package_is_reported_on_stderr_and_in_the_report(tiny_models, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "lpips", fake_lpips(fails(OSError("no VGG weights"))))
    broken = Judge(tiny_models.clip, tiny_models.vgg, *judge_module.try_lpips(tiny_models.device))
    # The tiny preset never tries LPIPS, so hand the command a judge that did.
    monkeypatch.setattr(Judge, "for_models", lambda *args: broken)
    out = tmp_path / "rep"
    assert main([*TINY_ARGS, "--limit", "1", "--out", str(out)]) == 0
    note = "LPIPS skipped: the lpips package failed: OSError: no VGG weights"
    assert f"python -m stylizer.eval: warning: {note}\n" in capsys.readouterr().err
    assert read_report(out)["lpips_skipped"] == {"note": note, "failure": True}
    assert f'<p class="warn">{note}</p>' in (out / "index.html").read_text(encoding="utf-8")


def test_metric_clip_reaches_the_judge_and_metrics_json(tiny_models, monkeypatch, tmp_path):
    """No judge weights exist offline, so the loader hands back a tiny CLIP labelled as the one asked for."""
    stand_in = build_clip(TINY_CLIP_ARCH, label="ViT-L-14 (stand-in)")
    requested, encoded = [], []
    encode_text = stand_in.encode_text

    def load_clip(name: str, device: torch.device):
        requested.append((name, device))
        return stand_in

    def spy(text: str) -> torch.Tensor:
        encoded.append(text)
        return encode_text(text)

    monkeypatch.setattr(judge_module, "load_clip", load_clip)
    monkeypatch.setattr(stand_in, "encode_text", spy)
    out = tmp_path / "rep"
    assert main([*TINY_ARGS, "--limit", "1", "--metric-clip", "ViT-L-14", "--out", str(out)]) == 0
    assert requested == [("ViT-L-14", tiny_models.device)]
    report = read_report(out)
    assert (report["guide_clip"], report["judge_clip"]) == (tiny_models.clip.name, "ViT-L-14 (stand-in)")
    assert report["rows"][0]["prompt"] in encoded  # the scores came from the judge CLIP, not the guide's
    assert "judge CLIP <b>ViT-L-14 (stand-in)</b>" in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--sweep", "nosuch=1,2"], "unknown setting 'nosuch'"),
        (["--sweep", "w_content=abc"], "'abc' is not a number"),
        (["--sweep", "steps=1.5"], "not a whole number"),
        (["--sweep", "w_content"], "FIELD=VALUE"),
        (["--sweep", "w_content=-5,10"], "w_content must be between"),
        (["--sweep", "w_content=1,1"], "repeats"),
        (["--set", "mode=sideways"], "mode must be one of"),
        (["--limit", "0"], "at least 1"),
        (["--metric-clip", "nope"], "invalid choice"),
        (["--images", "/nonexistent"], "does not exist"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, words, capsys):
    assert main([*TINY_ARGS, *args, "--out", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m stylizer.eval: error:")
    assert words in err


def test_prompts_file_skips_comments_blanks_and_repeats(tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    path.write_text("# styles\n\nfire\n  neon light  \n# more\nfire\n", encoding="utf-8")
    assert read_prompts(path) == ["fire", "neon light"]
    path.write_text("# only a comment\n", encoding="utf-8")
    assert main([*TINY_ARGS, "--prompts", str(path)]) == 2
    assert "holds no prompt" in capsys.readouterr().err


def test_find_images_takes_the_image_files_directly_inside_a_folder(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.webp"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format={".PNG": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[Path(name).suffix])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "LICENSE.md").write_text("MIT")
    (tmp_path / "nested").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "nested" / "d.png")
    (tmp_path / "folder.png").mkdir()  # a folder with an image's name is not an image
    assert [p.name for p in find_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]


def test_defaults_are_the_four_example_images_and_about_ten_prompts():
    assert DEFAULT_IMAGES.name == "assets"
    assert [p.name for p in find_images()] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert 8 <= len(read_prompts()) <= 12 and "drawing with black ink" in read_prompts()


def test_report_escapes_user_text(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    prompt = '<script>alert("x")</script> & ink'
    row = {
        "image": "<img>.jpg",
        "prompt": prompt,
        "setting": "default",
        "sweep": "",
        "output": "a.png",
        "content": "b.png",
        **{m: 0.5 for m in SCORES},
    }
    meta = {"model": "<m>", "untrained": True, "guide_clip": "c", "judge_clip": "c", "device": "cpu", "base": {}, "created": "now"}
    page = write_report([row], meta, list(SCORES), tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in page and "<img>.jpg" not in page and "<m>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; ink" in page


def test_ssim_is_one_for_identical_images_and_lower_for_different_ones():
    image = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    noisy = (image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert torch.allclose(metrics.ssim(image, image), torch.ones(2), atol=1e-5)
    assert (metrics.ssim(noisy, image) < 0.99).all()
    small = image[:1, :, :8, :]  # smaller than the window
    assert metrics.ssim(small, small).item() == pytest.approx(1.0, abs=1e-5)


def test_clip_score_is_a_symmetric_cosine():
    a, b = torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(2))
    assert metrics.clip_score(a, b).item() == pytest.approx(metrics.clip_score(b, a).item(), abs=1e-6)
    assert metrics.clip_score(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert metrics.clip_score(a, -a).item() == pytest.approx(-1.0, abs=1e-6)


def test_directional_similarity_is_one_when_aligned_and_minus_one_when_opposite():
    delta_text = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(3)), dim=0)
    deltas = torch.stack([3 * delta_text, -0.5 * delta_text])
    assert torch.allclose(metrics.directional_similarity(deltas, delta_text), torch.tensor([1.0, -1.0]), atol=1e-6)


def test_feature_distance_is_zero_for_identical_features_and_ignores_scale():
    features = [torch.randn(1, 8, 6, 6, generator=torch.Generator().manual_seed(s)) for s in (4, 5)]
    other = [torch.randn(1, 8, 6, 6, generator=torch.Generator().manual_seed(s)) for s in (6, 7)]
    assert metrics.feature_distance(features, features).item() == pytest.approx(0.0, abs=1e-6)
    assert metrics.feature_distance([2 * f for f in features], features).item() == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < metrics.feature_distance(other, features).item() <= 4.0


def test_the_creative_controls_sweep_and_apply_to_every_job(tmp_path):
    """--sweep over a blend weight and keep_colors, with one mask and one style picture for every job."""
    from PIL import ImageDraw

    images = tmp_path / "images"
    images.mkdir()
    for seed in (1, 2):
        make_image(seed=seed).save(images / f"p{seed}.png")
    mask = Image.new("L", (80, 60), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 39, 59), fill=255)
    mask.save(tmp_path / "mask.png")
    make_image(seed=9).save(tmp_path / "style.png")
    out = tmp_path / "rep"
    args = [*TINY_ARGS, "--images", str(images), "--limit", "1", "--out", str(out), "--set", "prompt_2=neon light"]
    sweeps = ["--sweep", "keep_colors=false,true", "--sweep", "weight_2=0,1"]
    assert main([*args, *sweeps, "--mask", str(tmp_path / "mask.png"), "--style-image", str(tmp_path / "style.png")]) == 0
    rows = read_report(out)["rows"]
    assert sorted((row["setting"], row["keep_colors"], row["weight_2"]) for row in rows) == [
        ("keep_colors=false", False, 1.0),
        ("keep_colors=true", True, 1.0),
        ("weight_2=0", False, 0.0),
        ("weight_2=1", False, 1.0),
    ]
    content = np.asarray(Image.open(out / rows[0]["content"]), dtype=np.int16)
    for row in rows:  # the mask keeps the right half of every result
        result = np.asarray(Image.open(out / row["output"]), dtype=np.int16)
        assert np.abs(result[:, 36:] - content[:, 36:]).max() <= 1


def test_a_mask_that_does_not_fit_an_image_is_named_before_any_work(tmp_path, capsys):
    Image.new("L", (20, 80), 255).save(tmp_path / "tall.png")
    assert main([*TINY_ARGS, "--limit", "1", "--mask", str(tmp_path / "tall.png"), "--out", str(tmp_path / "rep")]) == 2
    assert "must have the picture's aspect ratio" in capsys.readouterr().err and not (tmp_path / "rep").exists()
