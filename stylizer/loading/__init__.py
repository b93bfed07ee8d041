"""Model loading, grouped by job: which models (presets), where they run (devices), where their
files come from (hub, fetch), how each family is built (build), the untrained test models (tiny),
and loading the set a job uses (models). The names below load on first use, so listing the presets
(``--help``) imports no torch.
"""

from .._lazy import lazy_exports

_PUBLIC = {
    "CLIP_MODELS": "stylizer.loading.presets",
    "DEFAULT_PRESET": "stylizer.loading.presets",
    "PRESETS": "stylizer.loading.presets",
    "Preset": "stylizer.loading.presets",
    "resolve_preset": "stylizer.loading.presets",
    "default_devices": "stylizer.loading.devices",
    "resolve_device": "stylizer.loading.devices",
    "clear_cache": "stylizer.loading.models",
    "download": "stylizer.loading.models",
    "load_models": "stylizer.loading.models",
    "load_preset": "stylizer.loading.models",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, globals())
