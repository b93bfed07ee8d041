"""The untrained ``tiny`` and ``tiny-latent`` models: the real classes from small configs, seeded random weights.

They need no download and run in seconds on a CPU, for tests and offline smoke
runs. Every process builds identical weights, so a seed reproduces a result.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel, UNet2DModel
from open_clip.tokenizer import SimpleTokenizer
from torchvision.models.vgg import cfgs as vgg_layer_configs
from torchvision.models.vgg import make_layers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..engine.backends import LatentParts
from ..prompts import CLIP_CONTEXT_TOKENS

TINY_SEED = 1234
TINY_TEXT_WIDTH = 32

# Stable Diffusion 1.x/2.x's noise schedule, as in their scheduler/scheduler_config.json.
SD_SCHEDULE = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1
)
# Channel widths of the tiny VGG16: torchvision's layout with every width divided by this.
TINY_VGG_NARROWING = 8


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Initialise random-weight models identically in every process, without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_pixel_parts() -> tuple[UNet2DModel, dict]:
    """The tiny pixel UNet and a DDPM-style (linear betas, clipped x0) scheduler config."""
    with seeded(TINY_SEED):
        unet = tiny_unet()
    return unet, dict(DDIMScheduler(beta_schedule="linear", clip_sample=True).config)


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


def tiny_latent_parts() -> LatentParts:
    """Stable-Diffusion-shaped parts with seeded random weights: identical in every process, no download.

    The VAE downsamples 4x and the UNet 2x, so the image sides are multiples of 8 px.
    """
    tokenizer = clip_bpe_tokenizer()
    with seeded(TINY_SEED):
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


def tiny_taesd() -> AutoencoderTiny:
    """A small ``AutoencoderTiny`` (TAESD's architecture) on the tiny VAE's latents: 4 channels, 4x (three stages)."""
    with seeded(TINY_SEED):
        taesd = AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16),
            decoder_block_out_channels=(16, 16, 16),
            num_encoder_blocks=(1, 1, 1),
            num_decoder_blocks=(1, 1, 1),
            latent_channels=4,
        )
    # Centre the random decoder's output on mid-grey, where a trained TAESD's [0, 1] output lies, not near black.
    with torch.no_grad():
        taesd.decoder.layers[-1].bias.fill_(0.5)
    return taesd


@functools.cache
def tiny_taesd_folder() -> str:
    """:func:`tiny_taesd` saved as madebyollin/taesd lays out its files, so it loads through the real TAESD's path.

    Written once per process (``config.json`` and ``diffusion_pytorch_model.safetensors``
    at the folder's root) into a temporary folder that is removed at exit.
    """
    folder = tempfile.mkdtemp(prefix="stylizer-tiny-taesd-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    tiny_taesd().save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A two-layer ``CLIPTextModel`` over ``tokenizer``'s vocabulary, as wide as the tiny UNet's cross-attention."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_WIDTH,
        intermediate_size=2 * TINY_TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_CONTEXT_TOKENS,
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
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_CONTEXT_TOKENS)


def tiny_vgg_features() -> torch.nn.Sequential:
    """VGG16's ``features`` layout, every width narrowed, with torchvision's VGG initialisation."""
    narrow = [c if c == "M" else c // TINY_VGG_NARROWING for c in vgg_layer_configs["D"]]
    with seeded(TINY_SEED):
        features = make_layers(narrow)
        # torchvision's VGG init: keeps activations alive through 13 random conv layers.
        for layer in features:
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
    return features
