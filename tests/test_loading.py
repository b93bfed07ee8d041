"""Loading code: tiny models saved in the real checkpoints' on-disk layouts load back through the real paths.

The Hub and torch caches are private to the test session (see conftest) and the Hub
is offline, so a file laid out in the cache exactly as a download would leave it is
what ``load_models`` must find.
"""

import os
from pathlib import Path

import open_clip
import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import save_file

from stylizer import loading
from stylizer.engine.ddim import timestep_times
from stylizer.errors import ConfigError, ModelLoadError
from stylizer.loading import build, hub, load_models, load_preset, resolve_preset
from stylizer.loading.build import build_clip, load_backend, load_clip, load_vgg
from stylizer.loading.presets import TINY_CLIP_ARCH
from stylizer.loading.tiny import tiny_unet

from .helpers import hub_snapshot, save_flat_ddpm

# Each guidance CLIP choice: its open_clip architecture and the Hub repo its 'openai' weights come from.
CLIP_SOURCES = {
    "ViT-B-32": ("ViT-B-32", "timm/vit_base_patch32_clip_224.openai"),
    "ViT-B-16": ("ViT-B-16", "timm/vit_base_patch16_clip_224.openai"),
    "ViT-L-14": ("ViT-L-14", "timm/vit_large_patch14_clip_224.openai"),
}


@pytest.fixture(autouse=True)
def fresh_model_cache():
    loading.clear_cache()
    yield
    loading.clear_cache()


def test_flat_folder_loads_through_the_path_code(tmp_path):
    save_flat_ddpm(tmp_path, safe=True)
    backend = load_backend(str(tmp_path), torch.device("cpu"))
    assert backend.kind == "pixel" and backend.multiple == 4
    assert backend.new_scheduler().config.clip_sample is True


def test_pipeline_folder_with_unet_and_scheduler_subfolders_loads(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "unet")
    DDPMScheduler(beta_schedule="linear").save_pretrained(tmp_path / "scheduler")
    backend = load_backend(str(tmp_path), torch.device("cpu"))
    x = torch.zeros(1, 3, 16, 16)
    assert backend.eps(x, timestep_times(backend.new_scheduler(), 10, x.device), None).shape == x.shape


def test_weights_survive_the_round_trip(tmp_path):
    unet = tiny_unet()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.01)
    unet.save_pretrained(tmp_path)
    DDPMScheduler().save_pretrained(tmp_path)
    loaded = load_backend(str(tmp_path), torch.device("cpu")).unet
    for (name, a), (_, b) in zip(unet.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_folder_without_a_unet_is_a_clear_error(tmp_path):
    (tmp_path / "vae").mkdir()
    with pytest.raises(ModelLoadError, match="holds no diffusers UNet"):
        load_backend(str(tmp_path), torch.device("cpu"))


def test_repo_id_resolves_from_the_hub_cache_with_a_bin_checkpoint():
    """google/ddpm-ema-church-256 ships a .bin; it is read with torch.load(weights_only=True)."""
    save_flat_ddpm(hub_snapshot("google/ddpm-ema-church-256"), safe=False)
    backend = load_backend("google/ddpm-ema-church-256", torch.device("cpu"))
    assert backend.multiple == 4


def test_missing_repo_is_a_clear_error_naming_the_model_and_the_fix():
    with pytest.raises(ModelLoadError) as info:
        load_backend("nobody/no-such-model", torch.device("cpu"))
    message = str(info.value)
    assert "nobody/no-such-model" in message and "python -m stylizer download" in message
    assert "HF_HUB_OFFLINE" in message


def test_tiny_clip_saved_as_safetensors_loads_from_a_file(tmp_path):
    reference = load_clip("tiny", torch.device("cpu"))
    with torch.no_grad():
        for p in reference.model.parameters():
            p.mul_(1.5)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.model.state_dict().items()}, str(path))
    loaded = load_clip("tiny", torch.device("cpu"), pretrained=str(path))
    images = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.encode_images(images), reference.encode_images(images), atol=1e-5)
    assert loaded.encode_text("ink").shape == (64,)


def test_tiny_clip_loads_through_the_hub_cache_path_of_the_default_clip(monkeypatch, private_hub_cache):
    """The tiny config stands in for ViT-B-32 in this test only, so loading takes the real default path
    (tag 'openai' -> timm/vit_base_patch32_clip_224.openai -> open_clip_model.safetensors) in seconds."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "ViT-B-32", open_clip.get_model_config(TINY_CLIP_ARCH))
    reference = build_clip("ViT-B-32", tag_cfg=open_clip.get_pretrained_cfg("ViT-B-32", "openai"))
    with torch.no_grad():
        for p in reference.model.parameters():
            p.mul_(1.5)  # unlike the seeded random weights a failed load would leave
    snapshot = hub_snapshot(CLIP_SOURCES["ViT-B-32"][1])
    save_file({k: v.contiguous() for k, v in reference.model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    loaded = load_clip("ViT-B-32", torch.device("cpu"))
    assert loaded.name == "ViT-B-32/openai"
    images = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.encode_images(images), reference.encode_images(images), atol=1e-5)
    assert torch.allclose(loaded.encode_text("ink"), reference.encode_text("ink"), atol=1e-5)


@pytest.mark.parametrize("choice", list(CLIP_SOURCES))
def test_each_clip_choice_loads_its_architecture_from_its_own_repo(monkeypatch, tmp_path, choice):
    """``--clip`` picks the open_clip architecture and the Hub checkpoint (safetensors), with QuickGELU as OpenAI trained it."""
    fetched, built = [], []

    def fake_fetch(repo_id: str, filename: str) -> Path:
        fetched.append((repo_id, filename))
        return tmp_path / filename

    def fake_build(arch, checkpoint=None, tag_cfg=None, label=None):
        built.append((arch, checkpoint, tag_cfg["quick_gelu"], label))
        return build_clip(TINY_CLIP_ARCH)  # building the real architecture would take seconds and GBs

    monkeypatch.setattr(hub, "fetch", fake_fetch)
    monkeypatch.setattr(build, "build_clip", fake_build)
    models = load_models("tiny", "cpu", clip=choice)
    arch, repo = CLIP_SOURCES[choice]
    assert models.preset.clip == choice
    assert fetched == [(repo, "open_clip_model.safetensors")]
    assert built == [(arch, str(tmp_path / "open_clip_model.safetensors"), True, f"{arch}/openai")]


def test_vit_b_32_openai_loads_from_the_hub_cache_layout(private_hub_cache):
    """The real default CLIP path: tag 'openai' -> timm/vit_base_patch32_clip_224.openai -> safetensors."""
    model = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    with torch.no_grad():
        model.logit_scale.fill_(3.0)  # a marker that must come back
    snapshot = hub_snapshot(CLIP_SOURCES["ViT-B-32"][1])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    loaded = load_clip("ViT-B-32", torch.device("cpu"))
    assert loaded.name == "ViT-B-32/openai" and loaded.image_size == 224
    assert loaded.model.logit_scale.item() == 3.0
    assert torch.allclose(loaded.mean.flatten(), torch.tensor(open_clip.OPENAI_DATASET_MEAN))


def test_missing_clip_is_a_clear_error():
    with pytest.raises(ModelLoadError, match=r"CLIP ViT-L-14/openai.*python -m stylizer download"):
        load_clip("ViT-L-14", torch.device("cpu"))


def test_vgg16_loads_from_the_torch_hub_cache_and_fails_clearly_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="VGG16"):
        load_vgg(torch.device("cpu"))
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    folder = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "vgg16-397923af.pth")
    vgg = load_vgg(torch.device("cpu"))
    taps = vgg(torch.rand(1, 3, 64, 64))
    assert [t.shape[1] for t in taps] == [512, 512]
    assert torch.equal(vgg.features[0].weight, features[0].weight)


def test_unknown_model_clip_and_device_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        resolve_preset("not a model")
    with pytest.raises(ConfigError, match="unknown CLIP"):
        resolve_preset("tiny", clip="RN9000")
    with pytest.raises(ConfigError, match="device"):
        load_models("tiny", "tpu")


def test_models_are_cached_per_device():
    preset = resolve_preset("tiny")
    on_cpu, on_meta = load_preset(preset, torch.device("cpu")), load_preset(preset, torch.device("meta"))
    assert on_cpu is not on_meta
    assert {p.device.type for p in on_meta.backend.unet.parameters()} == {"meta"}
    assert {p.device.type for p in on_cpu.backend.unet.parameters()} == {"cpu"}
    assert load_preset(preset, torch.device("meta")) is on_meta and load_preset(preset, torch.device("cpu")) is on_cpu
    assert load_models("tiny", "cpu") is on_cpu


def test_tiny_weights_are_identical_in_every_load():
    first = load_backend("tiny", torch.device("cpu")).unet.state_dict()
    second = load_backend("tiny", torch.device("cpu")).unet.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


class _Payload:
    """Pickles to a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_pickle_checkpoint_is_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "pwned"
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"features.0.weight": _Payload(marker)}, folder / "vgg16-397923af.pth")
    with pytest.raises(ModelLoadError, match="VGG16 weights"):
        load_vgg(torch.device("cpu"))
    assert not marker.exists()


def _tampered_unet_folder(folder: Path, payload: _Payload) -> Path:
    """A google/ddpm-* folder whose .bin weights carry ``payload`` (and no safetensors to prefer)."""
    save_flat_ddpm(folder, safe=False)
    weights = folder / "diffusion_pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    torch.save({**state, "conv_in.weight": payload}, weights)
    return weights


def _tampered_clip_checkpoint(folder: Path, payload: _Payload) -> Path:
    state = build_clip(TINY_CLIP_ARCH).model.state_dict()
    path = folder / "open_clip_pytorch_model.bin"
    torch.save({**state, "logit_scale": payload}, path)
    return path


TAMPERED_LOADS = {
    "diffusion UNet (.bin)": (_tampered_unet_folder, lambda path: load_backend(str(path.parent), torch.device("cpu"))),
    "guidance CLIP (.bin)": (_tampered_clip_checkpoint, lambda path: load_clip("tiny", torch.device("cpu"), pretrained=str(path))),
}


@pytest.mark.parametrize("kind", list(TAMPERED_LOADS))
def test_pickle_checkpoints_that_would_run_code_are_refused_by_every_loader(tmp_path, kind):
    """A .bin checkpoint whose pickle calls os.system goes through the real loading path: refused, never run."""
    save, load = TAMPERED_LOADS[kind]
    live, marker = tmp_path / "live", tmp_path / "pwned"
    path = save(tmp_path, _Payload(live))
    torch.load(path, weights_only=False)  # the control: unpickled freely, the payload does run
    assert live.exists()
    save(tmp_path, _Payload(marker))
    with pytest.raises(ModelLoadError, match="could not load"):
        load(path)
    assert not marker.exists()
