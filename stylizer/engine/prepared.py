"""What a job computes from the picture alone, and a cache that keeps it for the next job on the same picture.

Before its first guided step a job encodes the picture (the VAE's clean latent, or the
pixels themselves), reads its CLIP embedding and VGG16 features (the losses' reference),
and, with ``start="invert"``, DDIM-inverts it to the start timestep: as many UNet passes
as the guided loop itself. None of that depends on the prompt, the loss weights, the
seed, the guidance or the patches, so a user who moves a slider and presses Stylize again
needs none of it recomputed. :class:`PreparedCache` keeps it, keyed by exactly what each
value depends on:

* the picture entry (clean latent, source features): the model set, its device and
  dtype, the picture's content (a hash of the RGB at working size), the working size, and
  the optimisations that change the numbers (autocast precision, memory layout);
* an inversion within it: the text the inversion is conditioned on (the reference, for
  text-conditioned models), the schedule (steps over the whole schedule and steps run),
  and every optimisation of the step (another precision rounds differently).

Which settings count is the knob table's to say (each knob's ``prepares``), so the keys here and
the page's preparation triggers come from the same flags.

A cached value is the very tensor a cold run computes, so results are unchanged.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler
from PIL import Image

from ..config import INVERSION, PICTURE, StyleConfig, prepared_by
from ..errors import ConfigError
from ..images import output_size, working_size
from . import optimization
from .ddim import StepTimes, inversion_times
from .models import Models
from .objective import SourceFeatures, source_features
from .optimization import Optimizations
from .step import run_inversion_step
from .tensors import to_tensor

DEFAULT_ENTRIES = 8
# Inversions kept per picture (other schedules or reference texts); the oldest goes first.
INVERSIONS_PER_PICTURE = 4


@dataclass(frozen=True)
class Inversion:
    """A DDIM inversion of a picture.

    Attributes:
        trajectory: the picture at each of the job's timesteps, first (the start point) to
            last; only the start is kept unless a job asked for all (a mask blends with them).
    """

    trajectory: tuple[torch.Tensor, ...]

    @property
    def start(self) -> torch.Tensor:
        """Where the guided loop starts: the picture inverted to the first timestep."""
        return self.trajectory[0]

    @property
    def complete(self) -> bool:
        """It holds every timestep, not only the start."""
        return len(self.trajectory) > 1


@dataclass
class PreparedPicture:
    """One picture at one working size, prepared for one model set.

    Attributes:
        clean: the encoded picture (what the UNet denoises at t = 0).
        features: its CLIP embedding and VGG16 features.
        inversions: its DDIM inversions, by :func:`inversion_key`.
    """

    clean: torch.Tensor
    features: SourceFeatures
    inversions: OrderedDict[tuple, Inversion] = field(default_factory=OrderedDict)

    def add_inversion(self, key: tuple, start: Inversion) -> None:
        """Keep an inversion, dropping the least recently used beyond :data:`INVERSIONS_PER_PICTURE`."""
        self.inversions[key] = start
        self.inversions.move_to_end(key)
        while len(self.inversions) > INVERSIONS_PER_PICTURE:
            self.inversions.popitem(last=False)


class PreparedCache:
    """A bounded LRU cache of :class:`PreparedPicture` entries, shared by the jobs of one device.

    Args:
        max_entries: pictures kept (each at one working size); the least recently used goes first.
        storage: keep the tensors on this device (e.g. ``"cpu"`` on ZeroGPU, where the GPU exists
            only inside a job) and move them to the job's device on use; None keeps them where
            they were computed.

    Attributes:
        stats: hit and miss counts, by ``"picture_hit"``, ``"picture_miss"``, ``"inversion_hit"``
            and ``"inversion_miss"``.
    """

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, storage: str | torch.device | None = None) -> None:
        if max_entries < 1:
            raise ConfigError(f"the prepared-picture cache needs at least 1 entry, got {max_entries}")
        self.max_entries = max_entries
        self.storage = torch.device(storage) if storage is not None else None
        self.stats: Counter[str] = Counter()
        self._entries: OrderedDict[tuple, PreparedPicture] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> PreparedPicture | None:
        """The entry for ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        self.stats["picture_hit" if entry is not None else "picture_miss"] += 1
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: PreparedPicture) -> None:
        """Keep ``entry``; the least recently used entries beyond the bound are dropped, and their tensors with them."""
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry (after an out-of-memory error, say)."""
        self._entries.clear()

    def stored(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` where this cache keeps its tensors."""
        return tensor if self.storage is None else tensor.to(self.storage)


@dataclass
class Prepared:
    """What a job starts from, on the job's device.

    Attributes:
        source: the picture at working size, (1, 3, H, W) in [-1, 1].
        work: the working size (W, H), multiples of the model's downsampling.
        out: the result's size (W, H), at the picture's own aspect ratio.
        optimizations: how the networks run.
        scheduler: a fresh scheduler after ``set_timesteps``.
        timesteps: the descending timesteps the job runs (the last ``strength`` of the schedule).
        clean: the encoded picture.
        features: the picture's CLIP embedding and VGG16 features.
        inversion: the DDIM inversion (start ``invert``), else None; with every timestep when asked for.
        reused: the start came from a cache (the inversion for ``invert``, the encoding for ``noise``).
    """

    source: torch.Tensor
    work: tuple[int, int]
    out: tuple[int, int]
    optimizations: Optimizations
    scheduler: DDIMScheduler
    timesteps: torch.Tensor
    clean: torch.Tensor
    features: SourceFeatures
    inversion: Inversion | None
    reused: bool

    @property
    def start(self) -> torch.Tensor | None:
        """The inverted start point, if the job starts from one."""
        return None if self.inversion is None else self.inversion.start


def picture_key(models: Models, config: StyleConfig, source: torch.Tensor, optimizations: Optimizations) -> tuple:
    """What a picture entry depends on: model set, device, dtype, the picture's content and size, the settings
    whose knobs say :data:`~stylizer.config.PICTURE`, and the numerics.

    Args:
        source: the picture at working size, (1, 3, H, W) in [-1, 1] (it is hashed on the host).
    """
    digest = hashlib.sha256(source.detach().to("cpu", torch.float32).numpy().tobytes()).hexdigest()
    settings = tuple((name, getattr(config, name)) for name in prepared_by(PICTURE))
    numerics = (optimizations.autocast, optimizations.channels_last)
    return (models.preset, str(models.device), models.backend.dtype, digest, tuple(source.shape[-2:]), settings, numerics)


def inversion_key(models: Models, config: StyleConfig, optimizations: Optimizations) -> tuple:
    """What an inversion depends on beyond its picture: the settings whose knobs say :data:`~stylizer.config.INVERSION`
    (the reference text only for models that read it) and the step's optimisations."""
    reads_text = models.backend.conditions_on_text
    settings = tuple((name, getattr(config, name)) for name in prepared_by(INVERSION) if name != "reference" or reads_text)
    return (settings, optimizations)


def prepare_picture(
    models: Models,
    image: Image.Image,
    config: StyleConfig,
    *,
    optimize: bool | Optimizations = False,
    cache: PreparedCache | None = None,
    on_invert: Callable[[int, int], None] | None = None,
    trajectory: bool = False,
) -> Prepared:
    """Everything a job needs before its first guided step, reusing what ``cache`` holds.

    The picture is resized to the working size, encoded, its CLIP and VGG16 features read,
    and (start ``invert``) DDIM-inverted to the first timestep. Called ahead of a job with a
    cache, it makes that job start at once.

    Args:
        models: the loaded models.
        image: the RGB picture.
        config: validated settings.
        optimize: the optimisation switch, as :func:`stylizer.engine.sampler.stylize` takes it.
        cache: where prepared pictures are kept between jobs (None: compute everything).
        on_invert: called as ``on_invert(done, total)`` after every inversion step; it may raise to abort.
        trajectory: keep the inversion at every timestep (a masked job blends with it), not only its start.
    """
    backend, device = models.backend, models.device
    optimizations = optimization.resolve(device, optimize)
    optimization.set_layout((*backend.networks, models.vgg), optimizations.channels_last)
    work = working_size(*image.size, config.size, backend.multiple)
    source = to_tensor(image, work).to(device)
    scheduler = backend.new_scheduler()
    # Host timesteps: the step tables are built from them once per job (see stylizer.engine.ddim).
    scheduler.set_timesteps(config.steps)
    timesteps = scheduler.timesteps[config.steps - config.denoise_steps :]
    key = picture_key(models, config, source, optimizations) if cache is not None else ()
    entry = cache.get(key) if cache is not None else None
    reused = entry is not None
    with torch.no_grad():
        if entry is None:
            features = source_features(models.clip, models.vgg, (source + 1) / 2, optimizations)
            entry = PreparedPicture(backend.encode(source), features)
            if cache is not None:
                entry = PreparedPicture(cache.stored(entry.clean), features.to(cache.storage))
                cache.put(key, entry)
        inversion = None
        if config.start == "invert":
            inversion, reused = _inverted(models, entry, config, optimizations, (scheduler, timesteps), cache, on_invert, trajectory)
    out = output_size(*image.size, config.size)
    features = entry.features.to(device)
    return Prepared(source, work, out, optimizations, scheduler, timesteps, entry.clean.to(device), features, inversion, reused)


def _inverted(
    models: Models,
    entry: PreparedPicture,
    config: StyleConfig,
    optimizations: Optimizations,
    schedule: tuple[DDIMScheduler, torch.Tensor],
    cache: PreparedCache | None,
    on_invert: Callable[[int, int], None] | None,
    trajectory: bool,
) -> tuple[Inversion, bool]:
    """``entry``'s picture inverted for this schedule, from the cache or now, on the job's device; and whether it was cached."""
    backend, device = models.backend, models.device
    key = inversion_key(models, config, optimizations)
    cached = entry.inversions.get(key)
    usable = cached is not None and (cached.complete or not trajectory)
    if cache is not None:
        cache.stats["inversion_hit" if usable else "inversion_miss"] += 1
    if usable:
        entry.inversions.move_to_end(key)
        return Inversion(tuple(x.to(device) for x in cached.trajectory)), True
    condition = backend.inversion_condition(config.reference)
    scheduler, timesteps = schedule
    steps: list[torch.Tensor] = []
    step = functools.partial(run_inversion_step, models, optimizations, cond=condition)
    ddim_invert(step, entry.clean.to(device), inversion_times(scheduler, timesteps, device), on_invert, steps)
    inversion = Inversion(tuple(reversed(steps)) if trajectory else (steps[-1],))
    if cache is not None:
        entry.add_inversion(key, Inversion(tuple(cache.stored(x) for x in inversion.trajectory)))
    return inversion, False


def ddim_invert(
    step: Callable[[torch.Tensor, StepTimes], torch.Tensor],
    clean: torch.Tensor,
    times: list[StepTimes],
    on_step: Callable[[int, int], None] | None = None,
    record: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM inversion: run the η = 0 update backwards from ``clean`` to the first timestep.

    Mirrors ``DDIMScheduler.step`` exactly (same ᾱ for the previous step, same final ᾱ),
    evaluating ε at the target timestep as in null-text inversion.

    Args:
        step: one inversion step, x and its :class:`StepTimes` -> x at the later timestep
            (see :func:`stylizer.engine.step.inversion_step`).
        clean: x at the end of the schedule (the encoded input).
        times: the steps from :func:`stylizer.engine.ddim.inversion_times`.
        on_step: called as ``on_step(done, total)`` after every inversion step.
        record: when given, each step's result is appended (x at the job's last timestep first).
    """
    x = clean
    for done, step_times in enumerate(times, start=1):
        x = step(x, step_times)
        if record is not None:
            record.append(x)
        if on_step is not None:
            on_step(done, len(times))
    return x
