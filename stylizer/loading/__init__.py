"""Model loading, grouped by job: which models (presets), where they run (devices), where their
files come from (hub, fetch), how each family is built (build), the untrained test models (tiny),
and the loaded set a job uses (models).
"""

from .devices import default_devices, resolve_device
from .models import Models, clear_cache, download, load_models, load_preset
from .presets import CLIP_MODELS, DEFAULT_PRESET, PRESETS, Preset, resolve_preset

__all__ = [
    "CLIP_MODELS",
    "DEFAULT_PRESET",
    "Models",
    "PRESETS",
    "Preset",
    "clear_cache",
    "default_devices",
    "download",
    "load_models",
    "load_preset",
    "resolve_device",
    "resolve_preset",
]
