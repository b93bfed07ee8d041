"""Thin wrappers that turn CLIP and VGG16 into differentiable feature extractors.

They own preprocessing (resize, normalisation) so that the losses see plain
[0, 1] images, and they cache the most recent prompts' text embeddings.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..prompts import TEXT_TEMPLATES
from .optimization import EAGER, Optimizations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Text embeddings kept per encoder, least recently used dropped first: a long-running app sees
# an unbounded stream of prompts, and a job only ever needs its own prompt and reference.
TEXT_CACHE_SIZE = 256


class ClipEncoder(nn.Module):
    """An open_clip model with differentiable image preprocessing and a text-embedding cache.

    Args:
        model: an open_clip ``CLIP`` model, in eval mode.
        tokenizer: the matching open_clip tokenizer.
        image_size: the vision tower's input side in px.
        mean, std: the model's image normalisation.
        name: a label for messages, e.g. ``"ViT-B-32/openai"``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        name: str,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.name = name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) resized to the model's input side (unchanged when already that size)."""
        if images.shape[-2:] == (self.image_size, self.image_size):
            return images
        return F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)

    def encode_images(self, images: torch.Tensor, optimizations: Optimizations = EAGER) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D) float32 unit embeddings; resized to the model's input size."""
        encode = optimizations.network(self.model, "encode_image")
        embeds = encode((self.fit(images) - self.mean) / self.std)
        return F.normalize(embeds.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, text: str) -> torch.Tensor:
        """(D,) unit embedding of ``text`` averaged over :data:`TEXT_TEMPLATES`.

        The :data:`TEXT_CACHE_SIZE` most recently used texts' embeddings are cached.
        """
        embed = self._text_cache.get(text)
        if embed is not None:
            self._text_cache.move_to_end(text)
            return embed
        tokens = self.tokenizer([t.format(text) for t in TEXT_TEMPLATES]).to(self.mean.device)
        per_template = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
        embed = F.normalize(per_template.mean(dim=0), dim=-1)
        self._text_cache[text] = embed
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return embed

    def text_direction(self, prompt: str, reference: str) -> torch.Tensor:
        """ΔT: the unit direction from the reference text to the style prompt."""
        return F.normalize(self.encode_text(prompt) - self.encode_text(reference), dim=-1)


class VggEncoder(nn.Module):
    """VGG16 ``features`` truncated after conv5_2, returning the conv4_2 and conv5_2 activations.

    Args:
        features: a torchvision VGG16 ``features`` stack (or one with the same layer layout).
    """

    # Indices of conv4_2 and conv5_2 in torchvision's VGG16 ``features``.
    LAYERS = (19, 26)

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features[: max(self.LAYERS) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) in [0, 1] -> [conv4_2, conv5_2] activations."""
        x = (images - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.LAYERS:
                taps.append(x)
        return taps
