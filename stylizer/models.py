"""Model presets and the one place that builds every model family.

* diffusion backends: diffusers ``UNet2DModel`` + scheduler (``pixel``), from a preset,
  a Hugging Face repo id or a local folder; or tiny random ones (``tiny``);
* guidance CLIP: open_clip (``ViT-B-32``/``openai`` by default);
* content VGG16: torchvision ``VGG16_Weights.IMAGENET1K_V1`` features.

Weights come through the libraries' own caches (``HF_HOME``, ``TORCH_HOME``) and
are held in memory once per (model, device). A failed download raises
:class:`ModelLoadError` naming the model and how to fetch it; nothing ever falls
back to the untrained ``tiny`` models silently.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import open_clip
import torch
from diffusers import DDIMScheduler, UNet2DModel
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs as vgg_layer_configs
from torchvision.models.vgg import make_layers

from . import hub
from .backends import DiffusionBackend, PixelBackend
from .encoders import ClipEncoder, VggEncoder
from .errors import ConfigError, ModelLoadError

TINY = "tiny"
TINY_SEED = 1234
TINY_CLIP_ARCH = "stylizer-tiny-clip"
open_clip.add_model_config(Path(__file__).with_name("model_configs"))

# Guidance CLIPs: name -> (open_clip architecture, pretrained tag).
CLIP_MODELS = {
    "ViT-B-32": ("ViT-B-32", "openai"),
    "ViT-B-16": ("ViT-B-16", "openai"),
    "ViT-L-14": ("ViT-L-14", "openai"),
    TINY: (TINY_CLIP_ARCH, None),
}
DEFAULT_CLIP = "ViT-B-32"


@dataclass(frozen=True)
class Preset:
    """A named model combination.

    Attributes:
        name: what users type after ``--model``.
        backend: ``"pixel"`` or ``"latent"``.
        source: Hugging Face repo id, local folder, or ``"tiny"``.
        clip: key of :data:`CLIP_MODELS`.
        size: default working resolution (long side, px).
        description: one line for ``--help`` and the app.
    """

    name: str
    backend: str
    source: str
    clip: str = DEFAULT_CLIP
    size: int = 256
    description: str = ""

    @property
    def untrained(self) -> bool:
        """True for the random-weight test models."""
        return self.source == TINY


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(TINY, "pixel", TINY, TINY, 64, "untrained tiny models (random weights) for tests and offline smoke runs"),
        Preset("church-256", "pixel", "google/ddpm-ema-church-256", size=256, description="DDPM trained on LSUN churches, 256 px (455 MB)"),
        Preset("bedroom-256", "pixel", "google/ddpm-ema-bedroom-256", size=256, description="DDPM trained on LSUN bedrooms, 256 px (455 MB)"),
        Preset("celebahq-256", "pixel", "google/ddpm-ema-celebahq-256", size=256, description="DDPM trained on CelebA-HQ faces, 256 px (455 MB)"),
    )
}
DEFAULT_PRESET = "church-256"


@dataclass
class Models:
    """Everything a job needs, loaded on one device.

    Attributes:
        preset: what was loaded.
        backend: the diffusion model behind the common interface.
        clip: guidance CLIP.
        vgg: content VGG16.
        device: where all of it lives.
    """

    preset: Preset
    backend: DiffusionBackend
    clip: ClipEncoder
    vgg: VggEncoder
    device: torch.device

    @property
    def name(self) -> str:
        """The preset name or model path."""
        return self.preset.name

    @property
    def untrained(self) -> bool:
        """True when these are the random-weight ``tiny`` models."""
        return self.preset.untrained


def resolve_device(requested: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA is an error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but no CUDA GPU is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {requested!r}; use cpu, cuda or cuda:N")
    return device


def resolve_preset(model: str, clip: str | None = None) -> Preset:
    """Turn a preset name, local folder or repo id into a :class:`Preset`.

    Args:
        model: preset name, path to a diffusers folder, or ``org/name`` repo id.
        clip: override the guidance CLIP (a key of :data:`CLIP_MODELS`).
    """
    if model in PRESETS:
        preset = PRESETS[model]
    elif Path(model).expanduser().is_dir():
        folder = str(Path(model).expanduser().resolve())
        preset = Preset(folder, "pixel", folder, description=f"diffusers folder {folder}")
    elif re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        preset = Preset(model, "pixel", model, description=f"Hugging Face repo {model}")
    else:
        raise ConfigError(
            f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}), a diffusers folder, or a Hugging Face repo id"
        )
    if clip is not None:
        if clip not in CLIP_MODELS:
            raise ConfigError(f"unknown CLIP {clip!r}: choose one of {', '.join(CLIP_MODELS)}")
        preset = Preset(preset.name, preset.backend, preset.source, clip, preset.size, preset.description)
    return preset


def load_models(model: str = DEFAULT_PRESET, device: str | None = None, clip: str | None = None) -> Models:
    """Load (or fetch from the in-memory cache) every model of a preset on a device.

    Args:
        model: preset name, diffusers folder or repo id.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``None`` for automatic.
        clip: override the preset's guidance CLIP.

    Raises:
        ConfigError: unknown model, CLIP or device.
        ModelLoadError: weights missing or unreadable, with how to get them.
    """
    preset = resolve_preset(model, clip)
    return _load_models_cached(preset, resolve_device(device))


@functools.lru_cache(maxsize=4)
def _load_models_cached(preset: Preset, device: torch.device) -> Models:
    backend = load_backend(preset.source, device)
    return Models(preset, backend, load_clip(preset.clip, device), load_vgg(device, tiny=preset.untrained), device)


def load_backend(source: str, device: torch.device) -> DiffusionBackend:
    """Build the diffusion backend for ``source`` (``"tiny"``, a folder or a repo id) on ``device``."""
    if source == TINY:
        with _seeded(TINY_SEED):
            unet = tiny_unet()
        scheduler_config = DDIMScheduler(beta_schedule="linear", clip_sample=True).config
    else:
        unet, scheduler_config = _load_pixel_unet(source)
    multiple = 2 ** (len(unet.config.block_out_channels) - 1)
    return PixelBackend(unet.to(device), scheduler_config, multiple)


def tiny_unet() -> UNet2DModel:
    """A small ``UNet2DModel`` (attention only at the lowest resolution) with random weights."""
    return UNet2DModel(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 48, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=16,
    )


UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _load_pixel_unet(source: str) -> tuple[UNet2DModel, dict]:
    """Load a ``UNet2DModel`` and its scheduler config from a flat or pipeline-style layout."""
    try:
        folder, subfolder = _pixel_folder(source)
        unet = UNet2DModel.from_pretrained(folder, subfolder=subfolder)
        scheduler_config = DDIMScheduler.load_config(folder, subfolder="scheduler" if subfolder else None)
    except ModelLoadError:
        raise
    except Exception as exc:  # any hub, I/O or format failure becomes one clear message
        raise _load_error(f"diffusion model {source!r}", exc, source) from exc
    return unet, dict(scheduler_config)


def _pixel_folder(source: str) -> tuple[str, str | None]:
    """A local folder holding the UNet, and ``None`` (flat, like google/ddpm-*) or ``"unet"`` (pipeline layout).

    Repo ids are fetched file by file into the Hub cache, so that only the UNet's
    config, one weights file (safetensors preferred) and the scheduler config come down.
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        if (folder / "config.json").is_file():
            return str(folder), None
        if (folder / "unet" / "config.json").is_file():
            return str(folder), "unet"
        raise ModelLoadError(f"{folder} holds no diffusers UNet: expected config.json or unet/config.json")
    first_error: Exception | None = None
    for subfolder, prefix, scheduler in ((None, "", "scheduler_config.json"), ("unet", "unet/", "scheduler/scheduler_config.json")):
        try:
            config = hub.fetch(source, prefix + "config.json")
        except EntryNotFoundError as exc:
            first_error = first_error or exc
            continue
        hub.fetch_first(source, [prefix + name for name in UNET_WEIGHTS])
        hub.fetch(source, scheduler)
        root = config.parent if subfolder is None else config.parent.parent
        return str(root), subfolder
    raise _load_error(f"diffusion model {source!r}", first_error, source)


def load_clip(name: str, device: torch.device, pretrained: str | None = None) -> ClipEncoder:
    """Build a guidance CLIP.

    Args:
        name: key of :data:`CLIP_MODELS`.
        device: target device.
        pretrained: override the weights: an open_clip tag or a checkpoint file
            (safetensors, or a state dict read with ``weights_only=True``).
    """
    if name not in CLIP_MODELS:
        raise ConfigError(f"unknown CLIP {name!r}: choose one of {', '.join(CLIP_MODELS)}")
    arch, tag = CLIP_MODELS[name]
    tag = pretrained or tag
    tag_cfg = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    try:
        checkpoint = _clip_checkpoint(tag_cfg) if tag_cfg else tag
        with _seeded(TINY_SEED), _quiet_logging(checkpoint is None):
            model = open_clip.create_model(
                arch, pretrained=checkpoint, force_quick_gelu=bool(tag_cfg.get("quick_gelu")), weights_only=True
            )
    except Exception as exc:  # hub, I/O and checkpoint-format failures alike
        raise _load_error(f"CLIP {arch}/{tag}", exc, None) from exc
    size = model.visual.image_size
    side = size[0] if isinstance(size, (tuple, list)) else size
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(tag_cfg.get("mean") or pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(tag_cfg.get("std") or pcfg.get("std", open_clip.OPENAI_DATASET_STD))
    label = f"{arch}/{tag}" if tag else f"{arch} (random weights)"
    return ClipEncoder(model, open_clip.get_tokenizer(arch), side, mean, std, label).to(device)


CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _clip_checkpoint(tag_cfg: dict) -> str:
    """Local path of an open_clip pretrained tag's weights, fetched from its Hub repo (safetensors first)."""
    repo = tag_cfg.get("hf_hub", "").strip("/")
    if not repo:
        raise ModelLoadError(f"this CLIP tag has no Hugging Face repo to fetch from ({tag_cfg.get('url', 'no url')})")
    return str(hub.fetch_first(repo, CLIP_WEIGHTS))


def load_vgg(device: torch.device, tiny: bool = False) -> VggEncoder:
    """VGG16 features with ImageNet weights (torchvision's cache), or a narrow random one when ``tiny``."""
    if tiny:
        narrow = [c if c == "M" else c // 8 for c in vgg_layer_configs["D"]]
        with _seeded(TINY_SEED):
            features = make_layers(narrow)
            # torchvision's VGG init: keeps activations alive through 13 random conv layers.
            for layer in features:
                if isinstance(layer, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                    torch.nn.init.zeros_(layer.bias)
            return VggEncoder(features).to(device)
    features = make_layers(vgg_layer_configs["D"])
    weights = VGG16_Weights.IMAGENET1K_V1
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)
    except Exception as exc:  # network, disk or format failures alike
        raise _load_error(f"VGG16 {weights} ({Path(weights.url).name})", exc, None) from exc
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
    return VggEncoder(features).to(device)


def _load_error(what: str, exc: BaseException | None, model: str | None) -> ModelLoadError:
    reason = hub.offline_reason() if isinstance(exc, LocalEntryNotFoundError) else ""
    if not reason:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300].rstrip(".") if exc else "not found"
    target = f" --model {model}" if model else ""
    return ModelLoadError(
        f"could not load {what}: {reason}. Fetch the weights once with `python -m stylizer download{target}` "
        "on a machine with internet access (they go to the HF_HOME and TORCH_HOME caches), "
        "or pass a local diffusers folder with --model PATH."
    )


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Initialise random-weight models identically in every process, without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _quiet_logging(quiet: bool) -> Iterator[None]:
    """Silence open_clip's 'initialized randomly' warning where random weights are intended."""
    if not quiet:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
