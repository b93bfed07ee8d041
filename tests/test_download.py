"""`python -m stylizer download`: resolves presets, fetches, reports sizes, is a no-op the second time, fails cleanly offline.

Nothing here reaches the network: the Hub and download.pytorch.org are stood in for by
:class:`FakeRemote`, which serves files from a local folder, or the network is refused outright.
"""

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import save_file
from torchvision.models.vgg import cfgs, make_layers

from stylizer import loading
from stylizer.cli import main
from stylizer.errors import ModelLoadError
from stylizer.loading import fetch, hub

from .helpers import FakeRemote, save_flat_ddpm

CHURCH_FILES = ("config.json", "diffusion_pytorch_model.bin", "scheduler_config.json", "open_clip_model.safetensors", "vgg16-397923af.pth")


def lay_out_church_256(root: Path) -> None:
    """Everything `church-256` needs (random weights), as ``root/<repo id>/<file>`` and ``root/torchvision/<file>``."""
    save_flat_ddpm(root / "google" / "ddpm-ema-church-256", safe=False)
    clip = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    clip_repo = root / "timm" / "vit_base_patch32_clip_224.openai"
    clip_repo.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(clip_repo / "open_clip_model.safetensors"))
    (root / "torchvision").mkdir()
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, root / "torchvision" / "vgg16-397923af.pth")


@pytest.fixture
def remote(tmp_path) -> FakeRemote:
    """A fake remote serving church-256's files."""
    lay_out_church_256(tmp_path / "remote")
    return FakeRemote(tmp_path / "remote")


def download_report(capsys) -> str:
    """Run `download --model church-256`, check the parts every run reports, and return its stderr."""
    assert main(["download", "--model", "church-256"]) == 0
    err = capsys.readouterr().err
    assert "church-256 is ready: 5 files" in err
    for name in CHURCH_FILES:
        assert name in err
    return err


@pytest.mark.usefixtures("private_caches")
def test_download_fetches_everything_once_then_runs_offline(capsys, tmp_path, picture_path, monkeypatch, remote):
    with monkeypatch.context() as online:
        online.setattr(hub, "hub_online", lambda: True)
        online.setattr(hub, "hf_hub_download", remote.hf_hub_download)
        online.setattr(torch.hub, "download_url_to_file", remote.download_url_to_file)

        err = download_report(capsys)
        assert sorted(p.name for p in remote.transfers) == sorted(CHURCH_FILES)
        assert all(p.is_file() for p in remote.transfers)
        in_caches, downloaded = re.search(r"5 files, (.+) in the caches \((.+) downloaded now\)", err).groups()
        assert downloaded == in_caches != "0 B"
        assert err.count("  fetched  ") == 5

        remote.transfers.clear()
        err = download_report(capsys)  # the second run finds everything in place and fetches nothing
        assert remote.transfers == []
        assert "(0 B downloaded now)" in err and err.count("  cached   ") == 5
    # The CLI then runs from the caches alone (the Hub is offline in the test session).
    loading.clear_cache()
    code = main(
        [
            picture_path,
            "-p",
            "ink",
            "-o",
            str(tmp_path / "out.png"),
            "--model",
            "church-256",
            "--size",
            "64",
            "--steps",
            "2",
            "--patches",
            "2",
            "--device",
            "cpu",
        ]
    )
    loading.clear_cache()
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out.png").is_file()


def test_download_of_an_uncached_model_fails_cleanly_offline(capsys):
    assert main(["download", "--model", "bedroom-256"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "google/ddpm-ema-bedroom-256" in err[0] and "HF_HUB_OFFLINE" in err[0]


@pytest.mark.usefixtures("private_caches")
def test_offline_vgg16_is_a_clear_error_and_never_downloaded(monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *args, **kwargs: pytest.fail("HF_HUB_OFFLINE=1 must not download"))
    with pytest.raises(ModelLoadError) as info:
        fetch.vgg_checkpoint()
    message = str(info.value)
    assert "VGG16" in message and "HF_HUB_OFFLINE" in message and "python -m stylizer download" in message


@pytest.fixture
def probe_decides(monkeypatch):
    """``HF_HUB_OFFLINE`` unset, so that hub_online's socket probe decides; its cached answer is dropped before and after."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.hub_online.cache_clear()
    yield
    hub.hub_online.cache_clear()  # before monkeypatch restores the variable, so the next call sees it again


@pytest.fixture
def network_down(monkeypatch) -> list:
    """Every connection attempt fails, as on a machine without a network; returns the addresses tried."""
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network is unreachable: {address}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda sock, address: refuse(address))
    return attempts


@pytest.mark.usefixtures("private_caches", "probe_decides")
def test_download_with_the_network_down_fails_in_one_line_naming_the_model(capsys, network_down):
    assert main(["download", "--model", "bedroom-256"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "google/ddpm-ema-bedroom-256" in err[0] and "cannot be reached" in err[0], err
    assert network_down == [(urlparse(constants.ENDPOINT).hostname, 443)]  # the probe, once, and nothing else


def test_random_weight_presets_need_no_download(capsys):
    assert main(["download", "--model", "tiny-latent"]) == 0
    assert "nothing to download" in capsys.readouterr().err
