"""A batch's plan: what every picture shares (:class:`BatchSpec`), which inputs there are, the names their outputs get,
and which are finished already; and the files' atomic writes. :mod:`stylizer.cli.batch` runs the plan.

The plan is made once, up front: which inputs (:func:`~stylizer.images.find_images`), the name each
gets in the output folder, and which are finished already: a picture whose record ``NAME.json`` says
it was made from the same file with the same model and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Limits, StyleConfig
from ..errors import ConfigError
from ..images import find_images, load_image, load_mask
from ..request import named_picture, picture_hashes, prompt_notes

# Temporary files are ".NAME.TOKEN.partial.png": hidden, and named by their run so that it can clear them.
PARTIAL = "partial"

Outcomes = Generator["Outcome", None, None]


@dataclass(frozen=True)
class BatchSpec:
    """What every picture of a batch shares: plain data, so that it travels to Ray actors.

    Attributes:
        out_dir: the output folder.
        model, clip, device: what :func:`stylizer.loading.load_models` loads.
        config: the checked settings (:meth:`StyleConfig.to_dict`).
        identity: what a finished picture's record must match to count as done: the model (preset
            name) and the settings record (see :meth:`~stylizer.config.StyleConfig.record`), with the guidance
            CLIP and a hash of the mask's and style picture's pixels.
        limits: the gate's caps.
        mask, style_image: those pictures' file bytes, or None.
        optimize: run the optimised guided step.
        frames: also write the trajectory as ``NAME.gif``.
        token: names this run's temporary files.
    """

    out_dir: str
    model: str
    clip: str | None
    device: str | None
    config: dict[str, Any]
    identity: dict[str, Any]
    limits: Limits
    mask: bytes | None = None
    style_image: bytes | None = None
    optimize: bool = False
    frames: bool = False
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    def output(self, name: str, suffix: str) -> Path:
        """The path of one of a picture's files: ``OUT_DIR/NAME.png``, ``.json`` or ``.gif``."""
        return Path(self.out_dir) / f"{name}{suffix}"


@dataclass(frozen=True)
class BatchItem:
    """One input: its absolute path, its output name (``NAME.png``) and the SHA-256 of its file."""

    path: str
    name: str
    sha256: str


@dataclass
class Outcome:
    """What became of one input.

    Attributes:
        path: the input.
        ok: its files are written.
        reason: why it failed, on one line.
        notes: what the user should know about it (first frame of an animation used, ...).
    """

    path: str
    ok: bool
    reason: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The inputs of a batch, sorted by what is to happen to them.

    Attributes:
        todo: to stylize.
        finished: done by an earlier run with the same settings; left as they are.
        failed: could not even be read.
        skipped: files whose name is not an image's.
    """

    todo: list[BatchItem] = field(default_factory=list)
    finished: list[BatchItem] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def batch_spec(
    out_dir: str | Path,
    model: str,
    settings: dict[str, Any],
    limits: Limits,
    *,
    clip: str | None = None,
    device: str | None = None,
    mask: str | None = None,
    style_image: str | None = None,
    preview: bool = False,
    optimize: bool = False,
    frames: bool = False,
) -> tuple[BatchSpec, list[str]]:
    """Check what every picture shares before any work: the model name, the settings, the mask and style picture.

    Args:
        out_dir: the output folder.
        model, clip, device: as ``--model``, ``--clip`` and ``--device``.
        settings: :class:`StyleConfig` fields; missing ones take their defaults.
        limits: the gate's caps.
        mask, style_image: paths of those pictures, or None.
        preview: run every picture as the quick look (``--preview``).
        optimize, frames: see :class:`BatchSpec`.

    Returns:
        The spec, and notes for the user (a prompt cut to CLIP's context).

    Raises:
        StylizerError: a bad setting, model name, mask or style picture.
    """
    from ..loading import resolve_preset

    preset = resolve_preset(model, clip)
    config = StyleConfig.from_dict(settings).validated(limits, style_image=style_image is not None)
    config = config.as_preview() if preview else config
    pictures = {
        "mask": None if mask is None else named_picture("mask", lambda: load_mask(mask, limits).image),
        "style_image": None if style_image is None else named_picture("style picture", lambda: load_image(style_image, limits).image),
    }
    identity = {"model": preset.name, "settings": config.record(model=preset.name, clip=preset.clip, pictures=picture_hashes(**pictures))}
    spec = BatchSpec(
        # Absolute, like the inputs' paths: a Ray actor's working folder is not the command's.
        out_dir=os.path.abspath(out_dir),
        model=model,
        clip=clip,
        device=device,
        config=config.to_dict(),
        # As it reads back from a record (lists, not tuples), for the comparison.
        identity=json.loads(json.dumps(identity)),
        limits=limits,
        mask=None if mask is None else Path(mask).read_bytes(),
        style_image=None if style_image is None else Path(style_image).read_bytes(),
        optimize=optimize,
        frames=frames,
    )
    return spec, prompt_notes(config)


def plan_batch(sources: Sequence[str], spec: BatchSpec, overwrite: bool = False) -> Plan:
    """Find the inputs, name their outputs and set aside those finished already.

    Args:
        sources: files, folders and glob patterns (see :func:`stylizer.images.find_images`).
        spec: the batch's shared settings.
        overwrite: redo every input, finished or not.

    Raises:
        InputError: a source that does not exist, or no image at all; ConfigError: two inputs of one name,
            or an output that would replace an input or a file this command did not write.
    """
    plan = Plan()
    images = find_images(*sources, on_other=plan.skipped.append)
    names = output_names(images)
    refuse_overwrites(images, names, spec)
    for path in images:
        try:
            digest = file_sha256(path)
        except OSError as exc:
            plan.failed.append(Outcome(os.path.abspath(path), False, f"cannot read it: {exc.strerror or exc}"))
            continue
        item = BatchItem(os.path.abspath(path), names[path], digest)
        (plan.todo if overwrite or not is_finished(item, spec) else plan.finished).append(item)
    return plan


def output_names(images: Iterable[Path]) -> dict[Path, str]:
    """Each input's output name: its file name without the suffix.

    Raises:
        ConfigError: two inputs would get one name (``a/x.jpg`` and ``b/x.png``); nothing is overwritten silently.
    """
    names: dict[str, Path] = {}
    for path in images:
        # Case apart, names clash on the file systems that ignore case.
        first = names.setdefault(path.stem.casefold(), path)
        if first != path:
            raise ConfigError(f"{first} and {path} would both be written as {path.stem}.png: rename one, or run them into separate folders")
    return {path: path.stem for path in names.values()}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_overwrites(images: Sequence[Path], names: dict[Path, str], spec: BatchSpec) -> None:
    """Refuse, before any work, a batch whose files would replace an input, or a file that is no result of this command.

    A result of this command is told by its record: ``NAME.json`` itself, and the ``NAME.png`` (and
    ``NAME.gif``) beside the record that names it. ``--overwrite`` redoes such results, and nothing else.

    Raises:
        ConfigError: naming the file and what to do.
    """
    inputs = {path.resolve() for path in images}
    suffixes = (".png", ".json", ".gif") if spec.frames else (".png", ".json")
    for path in images:
        record = batch_record(spec.output(names[path], ".json"))
        for suffix in suffixes:
            target = spec.output(names[path], suffix)
            if target.resolve() in inputs:
                raise ConfigError(f"{target} is an input, and its result would replace it: write into another folder (-o)")
            written = record is not None and (suffix != ".png" or Path(record.get("output", "")).name == target.name)
            if target.exists() and not written:
                why = "it is no record stylizer batch wrote" if suffix == ".json" else f"{names[path]}.json has no record of it"
                raise ConfigError(
                    f"{target} exists and is not a result of stylizer batch ({why}): move it, or write into another folder (-o)"
                )


def batch_record(path: Path) -> dict[str, Any] | None:
    """The record (``NAME.json``) a batch wrote at ``path``, or None where there is none or the file is something else."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"input_sha256", "settings"} <= set(record) else None


def is_finished(item: BatchItem, spec: BatchSpec) -> bool:
    """Whether an earlier run wrote this input's files with the same model and settings, from the same file."""
    record = batch_record(spec.output(item.name, ".json"))
    # A record without the job's time was written before the files: that run stopped before it finished.
    if record is None or record.get("input_sha256") != item.sha256 or "seconds" not in record:
        return False
    suffixes = (".png", ".gif") if spec.frames else (".png",)
    return all(record.get(key) == value for key, value in spec.identity.items()) and all(
        spec.output(item.name, suffix).is_file() for suffix in suffixes
    )


def write_atomically(path: Path, token: str, write: Callable[[Path], object]) -> None:
    """Call ``write`` with a temporary path beside ``path``, then move the file into place.

    Readers, and a run stopped halfway, see the old file or the whole new one, never a part.
    """
    temporary = path.with_name(f".{path.stem}.{token}.{PARTIAL}{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def clear_partial_files(spec: BatchSpec) -> None:
    """Remove this run's temporary files, which workers stopped from outside (Ray actors) may leave."""
    for path in Path(spec.out_dir).glob(f".*.{spec.token}.{PARTIAL}.*"):
        path.unlink(missing_ok=True)
