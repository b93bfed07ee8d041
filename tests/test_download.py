"""`python -m stylizer download`: resolves presets, reports sizes, is a no-op the second time, fails cleanly offline."""

import os
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file
from torchvision.models.vgg import cfgs, make_layers

from stylizer import models as models_module
from stylizer.cli import main

from .test_loading import hub_snapshot, save_flat_ddpm


def lay_out_church_256_caches() -> None:
    """Everything `church-256` needs, where a real download would leave it (random weights)."""
    save_flat_ddpm(hub_snapshot("google/ddpm-ema-church-256"), safe=False)
    clip = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()},
              str(hub_snapshot("timm/vit_base_patch32_clip_224.openai") / "open_clip_model.safetensors"))
    folder = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, folder / "vgg16-397923af.pth")


def test_download_reports_files_and_sizes_and_then_runs_offline(capsys, tmp_path, picture_path):
    lay_out_church_256_caches()
    for _ in range(2):  # the second run finds everything in place and fetches nothing
        assert main(["download", "--model", "church-256"]) == 0
        err = capsys.readouterr().err
        assert "church-256 is ready: 5 files" in err and "(0 B downloaded now)" in err
        for name in ("config.json", "diffusion_pytorch_model.bin", "scheduler_config.json", "open_clip_model.safetensors", "vgg16-397923af.pth"):
            assert name in err
    # The CLI then runs from the caches alone (the Hub is offline in the test session).
    models_module._load_models_cached.cache_clear()
    code = main([picture_path, "-p", "ink", "-o", str(tmp_path / "out.png"), "--model", "church-256", "--size", "64",
                 "--steps", "2", "--patches", "2", "--device", "cpu"])
    models_module._load_models_cached.cache_clear()
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out.png").is_file()


def test_download_of_an_uncached_model_fails_cleanly_offline(capsys):
    assert main(["download", "--model", "bedroom-256"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "google/ddpm-ema-bedroom-256" in err[0] and "HF_HUB_OFFLINE" in err[0]


def test_random_weight_presets_need_no_download(capsys):
    assert main(["download", "--model", "tiny-latent"]) == 0
    assert "nothing to download" in capsys.readouterr().err
