"""The loaded model set a job runs on; :mod:`stylizer.loading` builds it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .backends import DiffusionBackend
from .encoders import ClipEncoder, VggEncoder
from .preset import Preset


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
