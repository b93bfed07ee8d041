"""The latent (Stable Diffusion) backend on ``tiny-latent``: the shared loop, text conditioning, loading, inversion."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.models.autoencoders.vae import DecoderOutput
from torch import nn

from stylizer import loading
from stylizer.cli import main
from stylizer.config import StyleConfig
from stylizer.engine import sampler
from stylizer.engine.backends import VAE_TILE_SIDE, LatentBackend, PixelBackend
from stylizer.engine.ddim import timestep_times
from stylizer.engine.models import Models
from stylizer.engine.sampler import frame_steps
from stylizer.engine.tensors import to_pil, to_tensor
from stylizer.errors import ModelLoadError
from stylizer.loading import load_models, resolve_preset
from stylizer.loading.build import load_backend
from stylizer.loading.tiny import SD_SCHEDULE, tiny_latent_parts

from . import helpers
from .helpers import NO_GUIDANCE, AnalyticEps, hub_snapshot, make_image, pixels


@pytest.fixture(scope="module")
def latent_models():
    """The untrained ``tiny-latent`` preset on the CPU, loaded once."""
    return load_models("tiny-latent", "cpu")


def run(models, image, **settings):
    """A short job at strength 0.5 (the latent tests' default)."""
    return helpers.run(models, image, **{"strength": 0.5, **settings})


@pytest.fixture(scope="module")
def unguided(latent_models):
    """One unguided run (inverted start, cfg 7.5) on the 80x60 test picture, shared by several tests."""
    return run(latent_models, make_image(), **NO_GUIDANCE)


def test_preset_is_latent_untrained_and_sized_for_its_factors(latent_models):
    assert latent_models.preset.backend == latent_models.backend.kind == "latent"
    assert latent_models.untrained
    backend = latent_models.backend
    assert backend.multiple == 8 and backend.vae_factor == 4  # 4x VAE times 2x UNet
    assert backend.grad_gain == 1 / 16  # 1 / vae_factor², as 1/64 for SD's 8x VAE
    assert resolve_preset("sd15").backend == "latent" and not resolve_preset("sd15").untrained


def test_frames_stream_and_follow_steps_and_preview_interval(latent_models, picture):
    frames = run(latent_models, picture, steps=7, strength=1.0, preview_every=3, **NO_GUIDANCE)
    config = StyleConfig(prompt="x", steps=7, strength=1.0, preview_every=3)
    assert [f.step for f in frames] == frame_steps(config) == [1, 3, 6, 7]
    assert frames[-1].final and not any(f.final for f in frames[:-1])


def test_same_seed_same_pixels_other_seed_other_pixels_aspect_kept(latent_models, picture):
    first, again, other = (run(latent_models, picture, start="noise", seed=seed, steps=6, **NO_GUIDANCE) for seed in (7, 7, 8))
    assert np.array_equal(pixels(first[-1]), pixels(again[-1]))
    assert not np.array_equal(pixels(first[-1]), pixels(other[-1]))
    assert all(f.image.size == (64, 48) for f in first + other)  # 80x60 in, aspect kept


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_directional_guidance_lowers_directional_loss(latent_models, unguided, mode):
    guided = run(latent_models, make_image(), mode=mode, **{**NO_GUIDANCE, "w_dir": 20000.0})
    assert guided[-1].losses["dir"] < unguided[-1].losses["dir"] - 0.05


def test_cfg_scale_zero_changes_the_result(latent_models, unguided):
    no_text = run(latent_models, make_image(), cfg_scale=0.0, **NO_GUIDANCE)
    assert np.abs(pixels(no_text[-1]) - pixels(unguided[-1])).max() > 2


def test_classifier_free_guidance_combines_the_two_passes(latent_models):
    backend = latent_models.backend
    x = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
    t = timestep_times(backend.new_scheduler(), 500, x.device)
    with torch.no_grad():
        uncond = backend.eps(x, t, backend.condition([("ink", 1.0)], 0.0))
        text = backend.eps(x, t, backend.condition([("ink", 1.0)], 1.0))
        guided = backend.eps(x, t, backend.condition([("ink", 1.0)], 4.0))
    assert backend.condition([("ink", 1.0)], 0.0).embeds.shape[0] == 1  # cfg 0 skips the text pass
    assert not torch.allclose(uncond, text)
    assert torch.allclose(guided, uncond + 4.0 * (text - uncond), atol=1e-5)


def test_cli_cfg_scale_reaches_the_backend(monkeypatch, tmp_path, picture_path, latent_models):
    seen = []
    original = LatentBackend.condition
    monkeypatch.setattr(LatentBackend, "condition", lambda self, p, scale: seen.append(scale) or original(self, p, scale))
    code = main(
        [
            picture_path,
            "-p",
            "ink",
            "-o",
            str(tmp_path / "o.png"),
            "--model",
            "tiny-latent",
            "--steps",
            "2",
            "--strength",
            "0.5",
            "--cfg-scale",
            "3.5",
        ]
    )
    assert code == 0 and seen == [3.5]


def test_preview_decodes_a_downscaled_latent_and_the_result_the_full_one(latent_models):
    parts = tiny_latent_parts()
    backend = LatentBackend(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer, parts.scheduler_config, preview_max_side=32)
    latent = backend.encode(to_tensor(make_image(64, 48), (64, 48)))
    assert backend.preview(latent).shape == (1, 3, 24, 32)
    assert backend.decode(latent).shape == (1, 3, 48, 64)


def test_final_image_is_the_full_decode_of_the_final_latent_not_the_preview(monkeypatch, latent_models, picture):
    backend = latent_models.backend
    monkeypatch.setattr(backend, "preview_max_side", 32)  # 64 px frames: previews decode a half-size latent
    latents = []
    step = sampler.run_step

    def recorded_step(*args, **kwargs):
        """The job's step, keeping every latent it produces."""
        output = step(*args, **kwargs)
        latents.append(output.sample)
        return output

    monkeypatch.setattr(sampler, "run_step", recorded_step)
    frames = run(latent_models, picture, steps=6, preview_every=1, **NO_GUIDANCE)
    final_latent = latents[-1]
    with torch.no_grad():
        full = np.asarray(to_pil(backend.decode(final_latent), frames[-1].image.size), dtype=np.int16)
        preview = np.asarray(to_pil(backend.preview(final_latent), frames[-1].image.size), dtype=np.int16)
    assert np.abs(preview - full).max() > 2  # the cheap decode really is a different picture
    assert np.array_equal(pixels(frames[-1]), full)


def test_vae_tiles_only_above_the_tile_side(monkeypatch, latent_models):
    backend = latent_models.backend
    calls = []
    monkeypatch.setattr(
        backend.vae, "tiled_decode", lambda z, return_dict=True: calls.append(z.shape) or DecoderOutput(sample=torch.zeros(1, 3, 8, 8))
    )
    side = VAE_TILE_SIDE // backend.vae_factor
    backend.decode(torch.zeros(1, 4, side, 8))
    assert calls == []
    backend.decode(torch.zeros(1, 4, side + 1, 8))
    assert len(calls) == 1


class AnalyticLatentEps(AnalyticEps):
    """:class:`AnalyticEps` as a text-conditioned UNet: ε ignores x and the text but not t."""

    config = SimpleNamespace(block_out_channels=(32, 64))

    @property
    def dtype(self):
        return self.eps.dtype

    def forward(self, x, t, encoder_hidden_states):
        return super().forward(x, t)


def test_latent_inversion_round_trips_through_the_sampler(latent_models):
    """encode -> invert -> sample -> decode equals decode(encode(x)) within 1/255 (float rounding only)."""
    image = make_image(64, 48)
    parts = tiny_latent_parts()
    backend = LatentBackend(AnalyticLatentEps((1, 4, 12, 16)), parts.vae, parts.text_encoder, parts.tokenizer, parts.scheduler_config)
    analytic = Models(latent_models.preset, backend, latent_models.clip, latent_models.vgg, latent_models.device)
    with torch.no_grad():
        expected = np.asarray(to_pil(backend.decode(backend.encode(to_tensor(image, (64, 48))))), dtype=np.int16)
    result = run(analytic, image, start="invert", **NO_GUIDANCE)[-1]
    assert np.abs(pixels(result) - expected).max() <= 1
    noised = run(analytic, image, start="noise", **NO_GUIDANCE)[-1]
    assert np.abs(pixels(noised) - expected).max() > 2


def test_v_prediction_output_is_converted_to_epsilon():
    scheduler = DDIMScheduler(**SD_SCHEDULE, prediction_type="v_prediction")
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))

    class VModel(nn.Module):
        def forward(self, x, t):
            alpha_bar = scheduler.alphas_cumprod[int(t)]
            clean = (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
            return SimpleNamespace(sample=alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * clean)

    backend = PixelBackend(VModel(), scheduler.config, multiple=1)
    x = torch.randn(1, 4, 8, 8)
    assert torch.allclose(backend.eps(x, timestep_times(scheduler, 601, x.device), None), eps, atol=1e-5)
    assert backend.new_scheduler().config.prediction_type == "epsilon"


_SPECIAL = {"__type": "AddedToken", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
# stable-diffusion-v1-5's tokenizer/tokenizer_config.json and special_tokens_map.json.
SD15_TOKENIZER_FILES = {
    "tokenizer_config.json": {
        "add_prefix_space": False,
        "bos_token": {**_SPECIAL, "content": "<|startoftext|>"},
        "do_lower_case": True,
        "eos_token": {**_SPECIAL, "content": "<|endoftext|>"},
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": "<|endoftext|>",
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": {**_SPECIAL, "content": "<|endoftext|>"},
    },
    "special_tokens_map.json": {
        "bos_token": {**_SPECIAL, "content": "<|startoftext|>"},
        "eos_token": {**_SPECIAL, "content": "<|endoftext|>"},
        "pad_token": "<|endoftext|>",
        "unk_token": {**_SPECIAL, "content": "<|endoftext|>"},
    },
}


def save_tiny_sd(folder: Path, sd_tokenizer_files: bool = False) -> LatentBackend:
    """A tiny Stable Diffusion pipeline in the real diffusers layout, with a marker in the UNet's weights."""
    parts = tiny_latent_parts()
    with torch.no_grad():
        parts.unet.conv_in.bias.fill_(0.5)
    StableDiffusionPipeline(
        unet=parts.unet,
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        scheduler=DDIMScheduler.from_config(parts.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    if sd_tokenizer_files:  # what SD repos ship, instead of the tokenizer.json transformers 5 writes
        (folder / "tokenizer" / "tokenizer.json").unlink()
        parts.tokenizer.backend_tokenizer.model.save(str(folder / "tokenizer"))  # vocab.json, merges.txt
        for name, content in SD15_TOKENIZER_FILES.items():
            (folder / "tokenizer" / name).write_text(json.dumps(content))
    return parts


@pytest.fixture
def fresh_model_cache():
    loading.clear_cache()
    yield
    loading.clear_cache()


def load_like_load_models(model: str) -> LatentBackend:
    """What ``load_models`` does for the diffusion part (it would also fetch the real CLIP and VGG16)."""
    preset = resolve_preset(model)
    assert preset.backend == "latent" and preset.size == 512 and not preset.untrained
    return load_backend(preset.source, torch.device("cpu"), preset.backend)


def assert_loaded_like(backend, parts):
    assert backend.kind == "latent"
    assert torch.all(backend.unet.conv_in.bias == 0.5)
    assert backend.multiple == 8 and backend.max_tokens == 77
    ids = parts.tokenizer(["ink"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(backend.embed(["ink"]), parts.text_encoder(ids)[0], atol=1e-6)


def test_saved_pipeline_folder_loads_through_the_path_code(tmp_path, fresh_model_cache):
    parts = save_tiny_sd(tmp_path)
    assert_loaded_like(load_like_load_models(str(tmp_path)), parts)


def test_repo_id_loads_from_the_hub_cache_in_the_sd_layout(fresh_model_cache):
    parts = save_tiny_sd(hub_snapshot("someone/tiny-sd"), sd_tokenizer_files=True)
    assert_loaded_like(load_like_load_models("someone/tiny-sd"), parts)


def test_folder_missing_a_part_is_a_clear_error(tmp_path, fresh_model_cache):
    save_tiny_sd(tmp_path)
    shutil.rmtree(tmp_path / "vae")
    with pytest.raises(ModelLoadError, match=r"its vae is missing \(expected vae/config.json"):
        load_models(str(tmp_path), "cpu")


def test_uncached_repo_part_is_a_clear_error_naming_the_model_and_the_fix(fresh_model_cache):
    snapshot = hub_snapshot("someone/half-cached-sd")
    (snapshot / "model_index.json").write_text(
        json.dumps({"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]})
    )
    with pytest.raises(ModelLoadError) as info:
        load_models("someone/half-cached-sd", "cpu")
    message = str(info.value)
    assert "someone/half-cached-sd" in message and "python -m stylizer download --model someone/half-cached-sd" in message
    assert "HF_HUB_OFFLINE" in message


def test_tiny_latent_weights_are_identical_in_every_build():
    first, second = tiny_latent_parts(), tiny_latent_parts()
    for a, b in zip(first[:3], second[:3]):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
