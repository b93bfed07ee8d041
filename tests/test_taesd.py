"""TAESD as the guidance decoder (``guide_decoder``): loading in the real layout, decoding, errors, download, the eval sweep.

The Hub is offline in the test session (see conftest): the real repo's files are laid out in a
private Hub cache, or served by the download tests' :class:`FakeRemote`.
"""

import dataclasses
import os
import shutil

import pytest
import torch
from diffusers import AutoencoderTiny

from stylizer.cli import main
from stylizer.engine.backends import LatentBackend
from stylizer.engine.optimization import EAGER, Optimizations
from stylizer.errors import ConfigError, ModelLoadError
from stylizer.eval import Grid, sweep_settings
from stylizer.eval.dataset import find_images
from stylizer.loading import build, hub, load_models
from stylizer.loading.build import load_backend, load_taesd
from stylizer.loading.fetch import TAESD_FILES
from stylizer.loading.presets import PRESETS, TAESD_REPO, TINY_LATENT
from stylizer.loading.tiny import tiny_latent_parts, tiny_taesd, tiny_taesd_folder

from .helpers import FakeRemote, hub_snapshot, run

CPU = torch.device("cpu")
# A latent of the tiny VAE's (4 channels) for a 64x48 picture: its VAE and TAESD both upsample 4x.
LATENT = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def backend() -> LatentBackend:
    """A tiny-latent backend of this test's own (TAESD loads into it), with the preset's TAESD."""
    return load_backend(TINY_LATENT, CPU, "latent", PRESETS[TINY_LATENT].taesd)


def marked_taesd() -> AutoencoderTiny:
    """The tiny TAESD with a marker in its weights, unlike the seeded ones a wrong load would give."""
    taesd = tiny_taesd()
    with torch.no_grad():
        taesd.decoder.layers[0].bias.add_(0.25)
    return taesd


def test_the_tiny_taesd_is_saved_in_the_real_layout_and_loads_back_through_the_real_path():
    assert sorted(os.listdir(tiny_taesd_folder())) == sorted(TAESD_FILES)
    loaded, reference = load_taesd(TINY_LATENT, CPU, torch.float32), tiny_taesd()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values(), strict=True))


@pytest.mark.usefixtures("private_hub_cache")
def test_the_real_repo_loads_from_the_hub_cache_as_a_download_leaves_it():
    marked_taesd().save_pretrained(hub_snapshot(TAESD_REPO))
    backend = load_backend(TINY_LATENT, CPU, "latent", TAESD_REPO)  # what load_models does for sd15's TAESD
    with torch.no_grad():
        assert torch.allclose(backend.decode(LATENT, decoder="taesd"), marked_taesd().decode(LATENT).sample)


def test_taesd_decodes_the_scaled_latent_as_it_is_to_minus_one_to_one_with_gradients(backend):
    latent = LATENT.clone().requires_grad_(True)
    image = backend.decode(latent, decoder="taesd")
    assert image.shape == (1, 3, 48, 64) and image.dtype == torch.float32
    assert image.abs().max() < 1.5  # the random decoder is centred on mid-grey: [-1, 1] with a margin
    # TAESD reads the latent the UNet denoises (its scaling factor is 1), not the VAE's unscaled one.
    with torch.no_grad():
        assert torch.allclose(image, backend.taesd().decode(LATENT).sample)
        assert not torch.allclose(image, backend.decode(LATENT), atol=0.05)
    (grad,) = torch.autograd.grad(image.square().mean(), latent)
    assert grad.abs().sum() > 0


def test_taesd_runs_through_the_optimizations_like_the_vae(backend, monkeypatch):
    ran = []
    monkeypatch.setattr(Optimizations, "network", lambda self, module, method="forward": ran.append(module) or getattr(module, method))
    backend.decode(LATENT, Optimizations(batch_clip=True), decoder="taesd")
    backend.decode(LATENT, Optimizations(batch_clip=True))
    assert [type(net) for net in ran] == [AutoencoderTiny, type(backend.vae)]


def test_taesd_loads_on_the_first_job_that_asks_and_only_once(monkeypatch):
    loads = []
    monkeypatch.setattr(build, "load_taesd", lambda *args, **kwargs: loads.append(args) or tiny_taesd())
    backend = load_backend(TINY_LATENT, CPU, "latent", TINY_LATENT)
    backend.decode(LATENT)
    backend.preview(LATENT)
    assert loads == [] and len(backend.networks) == 2
    first = backend.preview(LATENT, decoder="taesd")
    assert torch.equal(backend.preview(LATENT, decoder="taesd"), first)
    assert loads == [(TINY_LATENT, CPU, torch.float32)]
    assert backend.networks[-1] is backend.taesd()  # its layout follows the other networks' from then on


def test_frames_decode_with_taesd_when_asked_and_with_the_vae_otherwise(backend):
    vae, taesd = backend.preview(LATENT), backend.preview(LATENT, decoder="taesd")
    assert vae.shape == taesd.shape == (1, 3, 48, 64)
    assert not torch.allclose(vae, taesd, atol=0.05)
    with torch.no_grad():
        assert torch.equal(vae, backend.decode(LATENT))


def test_the_pixel_backend_ignores_the_decoder(tiny_models):
    sample = torch.rand(1, 3, 16, 16)
    assert tiny_models.backend.decode(sample, decoder="taesd") is sample
    assert tiny_models.backend.preview(sample, decoder="taesd") is sample


def test_the_final_image_always_decodes_with_the_vae(backend, picture, monkeypatch):
    """Whatever decodes the guidance and the frames, the job's last decode (the result) is the VAE's."""
    decoders = []
    decode = backend.decode

    def spy(sample, optimizations=EAGER, decoder="vae"):
        decoders.append(decoder)
        return decode(sample, optimizations, decoder)

    monkeypatch.setattr(backend, "decode", spy)
    models = dataclasses.replace(load_models(TINY_LATENT, "cpu"), backend=backend)
    frames = run(models, picture, guide_decoder="taesd", size=32, steps=3, strength=1.0, start="noise", n_patches=2, preview_every=2)
    assert frames[-1].final and decoders[-1] == "vae"
    with torch.no_grad():
        assert not torch.equal(decode(LATENT), decode(LATENT, decoder="taesd"))  # so "vae" is not TAESD under another name


@pytest.mark.usefixtures("private_hub_cache")
def test_missing_taesd_files_are_a_clear_error_naming_the_repo_and_never_fall_back():
    backend = load_backend(TINY_LATENT, CPU, "latent", TAESD_REPO)
    for _ in range(2):  # and the second time too: nothing was cached in its place
        with pytest.raises(ModelLoadError) as info:
            backend.decode(LATENT, decoder="taesd")
        message = str(info.value)
        assert TAESD_REPO in message and "python -m stylizer download --model" in message and "HF_HUB_OFFLINE" in message
        assert "guide_decoder to vae" in message
    assert len(backend.networks) == 2


def test_a_backend_without_taesd_or_an_unknown_decoder_is_a_config_error(tmp_path):
    parts = tiny_latent_parts()
    backend = LatentBackend(*parts)
    with pytest.raises(ConfigError, match="no TAESD"):
        backend.decode(LATENT, decoder="taesd")
    with pytest.raises(ConfigError, match="guide_decoder must be one of vae, taesd"):
        backend.decode(LATENT, decoder="tae")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="holds no TAESD: expected config.json and diffusion_pytorch_model.safetensors"):
        load_taesd(str(tmp_path), CPU, torch.float32)


def test_a_taesd_for_another_vae_is_refused():
    parts = tiny_latent_parts()
    backend = LatentBackend(*parts, taesd_loader=lambda device, dtype: AutoencoderTiny())  # SD's: 8x, where the tiny VAE is 4x
    with pytest.raises(ModelLoadError, match="TAESD does not fit this model: it decodes 4-channel latents 8x, the VAE's are 4-channel 4x"):
        backend.decode(LATENT, decoder="taesd")


def lay_out_sd15(root) -> None:
    """sd15's files as ``root/<repo id>/<file>``: stand-ins for the big ones (download reads none of them), and the tiny TAESD."""
    sd = root / PRESETS["sd15"].source
    for name in (
        "model_index.json",
        *(f"{part}/{name}" for part in ("unet", "vae") for name in ("config.json", "diffusion_pytorch_model.safetensors")),
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ):
        (sd / name).parent.mkdir(parents=True, exist_ok=True)
        (sd / name).write_text("{}")
    (root / "timm" / "vit_base_patch32_clip_224.openai").mkdir(parents=True)
    (root / "timm" / "vit_base_patch32_clip_224.openai" / "open_clip_model.safetensors").write_text("{}")
    (root / "torchvision").mkdir()
    (root / "torchvision" / "vgg16-397923af.pth").write_text("{}")
    marked_taesd().save_pretrained(root / TAESD_REPO)


@pytest.fixture
def sd15_remote(tmp_path, private_caches) -> FakeRemote:
    """A fake remote serving sd15's files, into empty caches."""
    lay_out_sd15(tmp_path / "remote")
    return FakeRemote(tmp_path / "remote")


def download_sd15(remote: FakeRemote, monkeypatch) -> int:
    """`python -m stylizer download --model sd15` with the Hub and download.pytorch.org online, served by ``remote``."""
    with monkeypatch.context() as online:
        online.setattr(hub, "hub_online", lambda: True)
        online.setattr(hub, "hf_hub_download", remote.hf_hub_download)
        online.setattr(torch.hub, "download_url_to_file", remote.download_url_to_file)
        return main(["download", "--model", "sd15"])


def test_download_of_a_latent_preset_fetches_taesd_and_loading_then_reads_it_offline(sd15_remote, capsys, monkeypatch):
    assert download_sd15(sd15_remote, monkeypatch) == 0
    err = capsys.readouterr().err
    for name in TAESD_FILES:
        assert f"  fetched  {TAESD_REPO}  {name}" in err
    assert {p.name for p in sd15_remote.transfers} >= set(TAESD_FILES)
    loaded = load_taesd(TAESD_REPO, CPU, torch.float32)  # offline again, as the test session is
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), marked_taesd().state_dict().values(), strict=True))


def test_download_without_taesd_on_the_remote_fails_in_one_line_naming_it(sd15_remote, capsys, monkeypatch):
    shutil.rmtree(sd15_remote.root / TAESD_REPO)
    assert download_sd15(sd15_remote, monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"TAESD '{TAESD_REPO}'" in err[0] and "guide_decoder to vae" in err[0], err


def test_the_eval_harness_sweeps_the_guidance_decoder():
    settings = sweep_settings(["guide_decoder=vae,taesd"])
    assert [(s.label, dict(s.overrides), s.swept) for s in settings] == [
        ("guide_decoder=vae", {"guide_decoder": "vae"}, "guide_decoder"),
        ("guide_decoder=taesd", {"guide_decoder": "taesd"}, "guide_decoder"),
    ]
    grid = Grid(find_images()[:1], ["ink"], settings)
    assert [grid.config(s, "ink").guide_decoder for s in settings] == ["vae", "taesd"]
    with pytest.raises(ConfigError, match="guide_decoder must be one of vae, taesd, got 'tiny'"):
        Grid(find_images()[:1], ["ink"], sweep_settings(["guide_decoder=vae,tiny"]))
