"""Model presets and the one place that builds every model family.

* diffusion backends: diffusers ``UNet2DModel`` + scheduler (``pixel``), or a Stable
  Diffusion 1.x/2.x ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder
  (``latent``), from a preset, a Hugging Face repo id or a local folder; or tiny random
  ones of either kind (``tiny``, ``tiny-latent``);
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
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import open_clip
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from open_clip.tokenizer import SimpleTokenizer
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs as vgg_layer_configs
from torchvision.models.vgg import make_layers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from . import hub
from .backends import DiffusionBackend, LatentBackend, PixelBackend
from .encoders import ClipEncoder, VggEncoder
from .errors import ConfigError, ModelLoadError

TINY = "tiny"
TINY_LATENT = "tiny-latent"
TINY_SEED = 1234
PIXEL_SIZE = 256
LATENT_SIZE = 512
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
        source: Hugging Face repo id, local folder, ``"tiny"`` or ``"tiny-latent"``.
        clip: key of :data:`CLIP_MODELS`.
        size: default working resolution (long side, px).
        description: one line for ``--help`` and the app.
    """

    name: str
    backend: str
    source: str
    clip: str = DEFAULT_CLIP
    size: int = PIXEL_SIZE
    description: str = ""

    @property
    def untrained(self) -> bool:
        """True for the random-weight test models."""
        return self.source in (TINY, TINY_LATENT)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd15", "latent", "stable-diffusion-v1-5/stable-diffusion-v1-5", size=LATENT_SIZE,
               description="Stable Diffusion 1.5, latent, 512 px, any photo (4.3 GB: UNet 3.44 GB, VAE 335 MB, text encoder 492 MB)"),
        Preset("sd21-base", "latent", "stabilityai/stable-diffusion-2-1-base", size=LATENT_SIZE,
               description="Stable Diffusion 2.1 base, latent, 512 px (5.2 GB: UNet 3.46 GB, VAE 335 MB, text encoder 1.36 GB)"),
        Preset(TINY, "pixel", TINY, TINY, 64, "untrained tiny models (random weights) for tests and offline smoke runs"),
        Preset(TINY_LATENT, "latent", TINY_LATENT, TINY, 64, "untrained tiny latent models (random weights: UNet, VAE, text encoder) for tests"),
        Preset("church-256", "pixel", "google/ddpm-ema-church-256", size=256, description="DDPM trained on LSUN churches, 256 px (455 MB)"),
        Preset("bedroom-256", "pixel", "google/ddpm-ema-bedroom-256", size=256, description="DDPM trained on LSUN bedrooms, 256 px (455 MB)"),
        Preset("celebahq-256", "pixel", "google/ddpm-ema-celebahq-256", size=256, description="DDPM trained on CelebA-HQ faces, 256 px (455 MB)"),
    )
}
DEFAULT_PRESET = "sd15"


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
        preset = _source_preset(folder, f"diffusers folder {folder}")
    elif re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        preset = _source_preset(model, f"Hugging Face repo {model}")
    else:
        raise ConfigError(
            f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}), a diffusers folder, or a Hugging Face repo id"
        )
    if clip is not None:
        if clip not in CLIP_MODELS:
            raise ConfigError(f"unknown CLIP {clip!r}: choose one of {', '.join(CLIP_MODELS)}")
        preset = Preset(preset.name, preset.backend, preset.source, clip, preset.size, preset.description)
    return preset


def _source_preset(source: str, description: str) -> Preset:
    """A preset for a folder or repo id, with the backend its layout implies and that backend's usual size."""
    backend = detect_backend(source)
    size = LATENT_SIZE if backend == "latent" else PIXEL_SIZE
    return Preset(source, backend, source, size=size, description=f"{description} ({backend})")


MODEL_INDEX = "model_index.json"


def detect_backend(source: str) -> str:
    """``"latent"`` for a Stable Diffusion layout, else ``"pixel"``.

    A latent model is a folder or repo whose ``model_index.json`` names a ``vae``, or a
    folder with ``unet/`` and ``vae/`` subfolders. A repo whose index cannot be read is
    taken as ``pixel``; its loader then reports what is missing.

    Args:
        source: ``"tiny"``, ``"tiny-latent"``, a local folder or a repo id.
    """
    if source == TINY_LATENT:
        return "latent"
    if source == TINY:
        return "pixel"
    folder = Path(source).expanduser()
    if folder.is_dir():
        index = folder / MODEL_INDEX
        names_vae = index.is_file() and _index_names_vae(index)
        return "latent" if names_vae or ((folder / "unet").is_dir() and (folder / "vae").is_dir()) else "pixel"
    try:
        return "latent" if _index_names_vae(hub.fetch(source, MODEL_INDEX)) else "pixel"
    except Exception:  # offline, missing, private or unreadable: the loader gives the full message
        return "pixel"


def _index_names_vae(index: Path) -> bool:
    """Whether a diffusers ``model_index.json`` lists a VAE component."""
    entry = json.loads(index.read_text(encoding="utf-8")).get("vae")
    return isinstance(entry, list) and entry[0] is not None


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
    backend = load_backend(preset.source, device, preset.backend)
    return Models(preset, backend, load_clip(preset.clip, device), load_vgg(device, tiny=preset.untrained), device)


def load_backend(source: str, device: torch.device, kind: str | None = None) -> DiffusionBackend:
    """Build the diffusion backend for ``source`` on ``device``.

    Args:
        source: ``"tiny"``, ``"tiny-latent"``, a diffusers folder or a repo id.
        device: where the networks run.
        kind: ``"pixel"`` or ``"latent"``; detected from the layout when omitted.
    """
    if (kind or detect_backend(source)) == "latent":
        return _load_latent_backend(source, device)
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


DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


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
        hub.fetch_first(source, [prefix + name for name in DIFFUSERS_WEIGHTS])
        hub.fetch(source, scheduler)
        root = config.parent if subfolder is None else config.parent.parent
        return str(root), subfolder
    raise _load_error(f"diffusion model {source!r}", first_error, source)


TEXT_ENCODER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _config_and_weights(weights: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(("config.json", name) for name in weights)


# Each Stable Diffusion part is complete with any one of its file sets, tried in order:
# safetensors before .bin; the tokenizer files SD repos ship before the tokenizer.json that
# transformers 5 saves. Only these come down: no fp16/EMA variants, no safety checker.
LATENT_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "unet": _config_and_weights(DIFFUSERS_WEIGHTS),
    "vae": _config_and_weights(DIFFUSERS_WEIGHTS),
    "text_encoder": _config_and_weights(TEXT_ENCODER_WEIGHTS),
    "tokenizer": (("vocab.json", "merges.txt"), ("tokenizer.json",)),
    "scheduler": (("scheduler_config.json",),),
}
# Fetched when the repo has them: they set the tokenizer's length and special tokens.
TOKENIZER_EXTRAS = ("tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json")


class LatentParts(NamedTuple):
    """The components of a Stable Diffusion model, as loaded (before they move to a device)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict[str, Any]


def latent_dtype(device: torch.device) -> torch.dtype:
    """The precision the latent networks run in on ``device``.

    float32 on the CPU (half precision is slow there). On CUDA, half precision halves
    weights and activations; bfloat16 where the GPU supports it, because it keeps
    float32's exponent range and the guidance gradients flowing back through the UNet
    and decoder can underflow float16; float16 on older GPUs.
    """
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _load_latent_backend(source: str, device: torch.device) -> LatentBackend:
    """The latent backend for ``"tiny-latent"``, a Stable Diffusion folder or a repo id.

    Attention runs through PyTorch's scaled_dot_product_attention (diffusers' default on
    torch 2), which never materialises the attention matrix, so slicing is not needed.
    """
    dtype = latent_dtype(device)
    parts = tiny_latent_parts() if source == TINY_LATENT else _load_latent_parts(source, dtype)
    # Loaded parts are already in ``dtype``; casting them again only makes diffusers warn.
    nets = (parts.unet, parts.vae, parts.text_encoder)
    unet, vae, text_encoder = (net.to(device) if net.dtype == dtype else net.to(device, dtype) for net in nets)
    return LatentBackend(unet, vae, text_encoder, parts.tokenizer, parts.scheduler_config)


def _load_latent_parts(source: str, dtype: torch.dtype) -> LatentParts:
    """Load every component from the folder (or the Hub snapshot) in ``dtype``."""
    try:
        root = _latent_folder(source)
        return LatentParts(
            UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype),
            AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype),
            CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype),
            CLIPTokenizer.from_pretrained(root, subfolder="tokenizer"),
            dict(DDIMScheduler.load_config(root, subfolder="scheduler")),
        )
    except ModelLoadError:
        raise
    except Exception as exc:  # any hub, I/O or format failure becomes one clear message
        raise _load_error(f"Stable Diffusion model {source!r}", exc, source) from exc


def _latent_folder(source: str) -> str:
    """A local folder holding every part of :data:`LATENT_FILES`.

    A repo id is fetched file by file into the Hub cache, and its snapshot folder is returned.

    Raises:
        ModelLoadError: a part is missing from the folder or the repo.
        LocalEntryNotFoundError: the Hub is offline and a part is not cached.
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        for part, file_sets in LATENT_FILES.items():
            if not any(all((folder / part / name).is_file() for name in names) for names in file_sets):
                raise _missing_part(str(folder), part, file_sets)
        return str(folder)
    root = hub.fetch(source, MODEL_INDEX).parent
    for part, file_sets in LATENT_FILES.items():
        _fetch_part(source, part, file_sets)
    for name in TOKENIZER_EXTRAS:
        hub.fetch_optional(source, name)
    return str(root)


def _fetch_part(repo_id: str, part: str, file_sets: tuple[tuple[str, ...], ...]) -> None:
    """Fetch the first complete file set of ``part`` that the repo (or, offline, the cache) has."""
    offline: LocalEntryNotFoundError | None = None
    for names in file_sets:
        try:
            for name in names:
                hub.fetch(repo_id, f"{part}/{name}")
            return
        except LocalEntryNotFoundError as exc:  # not cached: a later set may be
            offline = offline or exc
        except EntryNotFoundError:
            continue
    if offline is not None:
        raise offline
    raise _missing_part(repo_id, part, file_sets)


def _missing_part(where: str, part: str, file_sets: tuple[tuple[str, ...], ...]) -> ModelLoadError:
    expected = " or ".join(" + ".join(f"{part}/{name}" for name in names) for names in file_sets)
    layout = ", ".join(f"{name}/" for name in LATENT_FILES)
    return ModelLoadError(
        f"{where} is not a complete Stable Diffusion model: its {part} is missing (expected {expected}). "
        f"A diffusers Stable Diffusion folder holds {MODEL_INDEX} and {layout}."
    )


CLIP_CONTEXT_LENGTH = 77
TINY_TEXT_WIDTH = 32
# Stable Diffusion 1.x/2.x's noise schedule, as in their scheduler/scheduler_config.json.
SD_SCHEDULE = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1
)


def tiny_latent_parts() -> LatentParts:
    """Stable-Diffusion-shaped parts with seeded random weights: identical in every process, no download.

    The VAE downsamples 4x and the UNet 2x, so the image sides are multiples of 8 px.
    """
    tokenizer = clip_bpe_tokenizer()
    with _seeded(TINY_SEED):
        unet, vae, text_encoder = tiny_latent_unet(), tiny_vae(), tiny_text_encoder(tokenizer)
    return LatentParts(unet, vae, text_encoder, tokenizer, dict(DDIMScheduler(**SD_SCHEDULE).config))


def tiny_latent_unet() -> UNet2DConditionModel:
    """A small text-conditioned UNet (attention only at the lowest resolution) on 4-channel latents."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_vae() -> AutoencoderKL:
    """A small ``AutoencoderKL`` with 4 latent channels that downsamples 4x."""
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A two-layer ``CLIPTextModel`` over ``tokenizer``'s vocabulary, as wide as the tiny UNet's cross-attention."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_WIDTH,
        intermediate_size=2 * TINY_TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_CONTEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def clip_bpe_tokenizer() -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (the one SD 1.x ships), built offline from the BPE vocabulary inside open_clip."""
    bpe = SimpleTokenizer()
    vocab = dict(bpe.encoder)
    # Same ids (49406, 49407) as transformers' CLIPTokenizer, under open_clip's own names.
    for ours, theirs in zip(("<|startoftext|>", "<|endoftext|>"), (bpe.sot_token_id, bpe.eot_token_id)):
        vocab[ours] = vocab.pop(bpe.decoder[theirs])
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_CONTEXT_LENGTH)


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
