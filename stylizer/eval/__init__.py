"""Evaluation harness: stylize content images x style prompts x settings, measure, and report.

Measures what the papers report: CLIP score to the prompt, directional CLIP
similarity, patch CLIP score, SSIM and a VGG feature distance (LPIPS when the
``lpips`` package works) to the content image, and seconds per image. Run it as
``python -m stylizer.eval`` (see :mod:`stylizer.eval.cli`), or in-process::

    from stylizer.eval import Grid, Judge, run_grid
    from stylizer.eval.dataset import find_images, read_prompts

    models = load_models("tiny", "cpu")
    grid = Grid(find_images()[:2], read_prompts()[:2], sweep_settings(["w_content=0,200"]), base={"size": 64})
    rows = list(run_grid(models, Judge.for_models(models), grid, "report"))  # then report.write_report(...)
"""

from .judge import Judge
from .report import write_report
from .runner import Grid, run_grid
from .sweeps import Setting, sweep_settings

__all__ = ["Grid", "Judge", "Setting", "run_grid", "sweep_settings", "write_report"]
