"""What a loaded model set is: the descriptor of a named model combination. No torch here, so the command
lines can list the presets without loading it."""

from __future__ import annotations

from dataclasses import dataclass

# Guidance CLIP and working size when a preset names neither (a pixel DDPM at its training size).
DEFAULT_CLIP = "ViT-B-32"
PIXEL_SIZE = 256


@dataclass(frozen=True)
class Preset:
    """A named model combination.

    Attributes:
        name: what users type after ``--model``.
        backend: ``"pixel"`` or ``"latent"``.
        source: Hugging Face repo id, local folder, ``"tiny"`` or ``"tiny-latent"``.
        clip: key of :data:`stylizer.loading.CLIP_MODELS`.
        size: default working resolution (long side, px).
        description: one line for ``--help`` and the app.
        taesd: the tiny autoencoder that ``guide_decoder="taesd"`` decodes with: a repo id, a local
            folder or ``"tiny-latent"`` (its random one); None for pixel models.
        untrained: random-weight test models (their output is noise).
    """

    name: str
    backend: str
    source: str
    clip: str = DEFAULT_CLIP
    size: int = PIXEL_SIZE
    description: str = ""
    taesd: str | None = None
    untrained: bool = False
