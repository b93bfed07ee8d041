"""Where weights come from: the files each model needs, fetched through the libraries' own caches.

Hugging Face repos are fetched file by file into ``HF_HOME`` (only the files a
model needs: safetensors before ``.bin``, no fp16 or EMA variants); VGG16 comes
from torchvision's URL into ``TORCH_HOME``. The builders in :mod:`stylizer.loading.build`
and the ``download`` command use the same functions, so what ``download`` fetched
is exactly what loading reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from torchvision.models import VGG16_Weights

from ..errors import ModelLoadError
from . import hub
from .presets import MODEL_INDEX

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

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

CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# A TAESD checkpoint in diffusers' layout: a flat AutoencoderTiny. Its repos ship safetensors, so no pickle is ever read.
TAESD_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
# The other way out a failed load's message offers: a local model, or (for TAESD) the model's own decoder.
LOCAL_MODEL_HINT = "or pass a local diffusers folder with --model PATH"
TAESD_HINT = "or set guide_decoder to vae (the model's own decoder)"


def pixel_folder(source: str) -> tuple[str, str | None]:
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
    raise load_error(f"diffusion model {source!r}", first_error, source)


def latent_folder(source: str) -> str:
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


def taesd_folder(source: str) -> str:
    """A local folder holding :data:`TAESD_FILES` at its root; a repo id is fetched into the Hub cache.

    Raises:
        ModelLoadError: the folder lacks a file.
        EntryNotFoundError: the repo lacks a file (``LocalEntryNotFoundError``: it is not cached and the Hub is offline).
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        if not all((folder / name).is_file() for name in TAESD_FILES):
            raise ModelLoadError(f"{folder} holds no TAESD: expected {' and '.join(TAESD_FILES)}")
        return str(folder)
    config, _ = [hub.fetch(source, name) for name in TAESD_FILES]
    return str(config.parent)


def taesd_failures(source: str, model: str | None) -> contextlib.AbstractContextManager[None]:
    """:func:`explained_failures` for a TAESD: named as ``guide_decoder``'s, with the VAE as the way out.

    Args:
        source: the TAESD's repo id or folder.
        model: the ``--model`` value whose download fetches it.
    """
    return explained_failures(f"TAESD {source!r} (guide_decoder taesd)", model, TAESD_HINT)


def clip_checkpoint(tag_cfg: dict) -> str:
    """Local path of an open_clip pretrained tag's weights, fetched from its Hub repo (safetensors first)."""
    repo = tag_cfg.get("hf_hub", "").strip("/")
    if not repo:
        raise ModelLoadError(f"this CLIP tag has no Hugging Face repo to fetch from ({tag_cfg.get('url', 'no url')})")
    return str(hub.fetch_first(repo, CLIP_WEIGHTS))


def vgg_checkpoint() -> Path:
    """Path of torchvision's VGG16 ImageNet weights in ``TORCH_HOME``, downloaded (hash-checked) if missing.

    Raises:
        ModelLoadError: the file is missing and the network may not be used (``HF_HUB_OFFLINE``) or cannot be reached.
    """
    weights = VGG16_Weights.IMAGENET1K_V1
    name = Path(weights.url).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    cached = path.is_file()
    if not cached:
        with explained_failures(f"VGG16 {weights} ({name})"):
            if not hub.hub_online():
                # torch.hub has no offline mode: without this, HF_HUB_OFFLINE=1 would still reach download.pytorch.org.
                raise LocalEntryNotFoundError(f"{name} is not in {path.parent}")
            path.parent.mkdir(parents=True, exist_ok=True)
            # torchvision names files <name>-<first 8 hex digits of the SHA-256>.pth
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=name.rsplit("-", 1)[-1].split(".")[0], progress=True)
    hub.record(hub.Fetched("torchvision", name, path, path.stat().st_size, downloaded=not cached))
    return path


def load_error(what: str, exc: BaseException | None, model: str | None, instead: str = LOCAL_MODEL_HINT) -> ModelLoadError:
    """The one message for a model that could not be loaded: what, why, and how to fetch it.

    Args:
        what: the model, as the message should name it.
        exc: the failure (a missing cache entry is explained by :func:`hub.offline_reason`).
        model: the ``--model`` value for the download hint, if it applies.
        instead: the message's last words: what else to do.
    """
    reason = hub.offline_reason() if isinstance(exc, LocalEntryNotFoundError) else ""
    if not reason:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300].rstrip(".") if exc else "not found"
    target = f" --model {model}" if model else ""
    return ModelLoadError(
        f"could not load {what}: {reason}. Fetch the weights once with `python -m stylizer download{target}` "
        f"on a machine with internet access (they go to the HF_HOME and TORCH_HOME caches), {instead}."
    )


@contextlib.contextmanager
def explained_failures(what: str, model: str | None = None, instead: str = LOCAL_MODEL_HINT) -> Iterator[None]:
    """Turn any hub, I/O or format failure inside the block into one :class:`ModelLoadError` about ``what``.

    Args:
        what: the model, as the message should name it.
        model: the ``--model`` value for the download hint, if it applies.
        instead: the message's last words: what else to do.
    """
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as exc:  # the loading boundary: every failure gets one clear message
        raise load_error(what, exc, model, instead) from exc
