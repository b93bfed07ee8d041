"""The evaluation harness on the tiny preset: report files, metric functions, slider response, option errors."""

import csv
import json
import math
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
import torch.nn.functional as F

from stylizer.eval import Grid, Judge, metrics, run_grid, sweep_settings, write_report
from stylizer.eval.cli import main
from stylizer.eval.dataset import DEFAULT_IMAGES, find_images, read_prompts

SMALL = {"size": 64, "steps": 10, "strength": 0.7}
SCORES = ("clip_score", "directional_similarity", "patch_clip_score", "ssim", "vgg_feature_distance", "seconds")
TINY_ARGS = ["--model", "tiny", "--device", "cpu", "--size", "64", "--steps", "10"]


@pytest.fixture(scope="module")
def judge(tiny_models):
    return Judge.for_models(tiny_models)


def meta_for(models, judge):
    return {"model": models.name, "untrained": models.untrained, "guide_clip": models.clip.name,
            "judge_clip": judge.clip.name, "device": str(models.device), "base": SMALL, "created": "now"}


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
    page = (out / "index.html").read_text(encoding="utf-8")
    linked = {unquote(src) for src in re.findall(r'src="([^"]+)"', page)}
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


def test_command_line_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([*TINY_ARGS, "--limit", "2", "--set", "strength=0.7", "--metric-clip", "tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert_complete_report(out, runs=4)


def test_raising_the_content_weight_lowers_the_content_distance(tiny_models, judge, tmp_path):
    """The slider-response check: w_content 0 vs 10000 keeps more of the content image."""
    grid = Grid(find_images()[:1], ["drawing with black ink"], sweep_settings(["w_content=0,10000"]), SMALL)
    weak, strong = run_grid(tiny_models, judge, grid, tmp_path)
    assert (weak["w_content"], strong["w_content"]) == (0.0, 10000.0)
    assert strong["vgg_feature_distance"] < 0.8 * weak["vgg_feature_distance"]
    assert strong["ssim"] > weak["ssim"]


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


def test_defaults_are_the_example_images_and_about_ten_prompts():
    assert [p.name for p in find_images()] == sorted(p.name for p in DEFAULT_IMAGES.glob("*.jpg"))
    assert 8 <= len(read_prompts()) <= 12 and "drawing with black ink" in read_prompts()


def test_report_escapes_user_text(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    prompt = '<script>alert("x")</script> & ink'
    row = {"image": "<img>.jpg", "prompt": prompt, "setting": "default", "sweep": "", "output": "a.png", "content": "b.png",
           **{m: 0.5 for m in SCORES}}
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
