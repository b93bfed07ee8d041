"""Stylizer: restyle an image from a text prompt with CLIP- and VGG-guided DDIM diffusion.

Library use::

    from stylizer import StyleConfig, check_request, load_models, stylize

    models = load_models("church-256")
    request = check_request("photo.jpg", {"prompt": "drawing with black ink", "size": models.preset.size})
    for frame in stylize(models, request):
        print(frame.step, frame.total, frame.losses)
    frame.image.save("out.png")

The names below load on first use, so ``import stylizer.config`` (or any module that needs no
torch) does not import torch, diffusers or open_clip.
"""

from ._lazy import lazy_exports

# Each public name and the module that defines it.
_PUBLIC = {
    "ConfigError": "stylizer.errors",
    "InputError": "stylizer.errors",
    "ModelLoadError": "stylizer.errors",
    "StylizerError": "stylizer.errors",
    "Limits": "stylizer.config",
    "StyleConfig": "stylizer.config",
    "load_image": "stylizer.images",
    "Request": "stylizer.request",
    "check_request": "stylizer.request",
    "PRESETS": "stylizer.loading.presets",
    "load_models": "stylizer.loading.models",
    "Models": "stylizer.engine.models",
    "PreparedCache": "stylizer.engine.prepared",
    "prepare_picture": "stylizer.engine.prepared",
    "Frame": "stylizer.engine.sampler",
    "stylize": "stylizer.engine.sampler",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
