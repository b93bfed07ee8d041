"""Stylizer: restyle an image from a text prompt with CLIP- and VGG-guided DDIM diffusion.

Library use::

    from stylizer import StyleConfig, load_image, load_models, stylize

    models = load_models("church-256")
    config = StyleConfig(prompt="drawing with black ink").validated()
    for frame in stylize(models, load_image("photo.jpg").image, config):
        print(frame.step, frame.total, frame.losses)
    frame.image.save("out.png")
"""

from .config import Limits, StyleConfig
from .errors import ConfigError, InputError, ModelLoadError, StylizerError
from .images import load_image
from .loading import PRESETS, load_models
from .prepared import PreparedCache, prepare_picture
from .sampler import Frame, stylize

__all__ = [
    "ConfigError",
    "Frame",
    "InputError",
    "Limits",
    "ModelLoadError",
    "PRESETS",
    "PreparedCache",
    "StyleConfig",
    "StylizerError",
    "load_image",
    "load_models",
    "prepare_picture",
    "stylize",
]
