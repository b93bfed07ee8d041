"""A job's files on the server: the result PNG and the trajectory GIF, in per-job folders that expire."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..images import save_animation

RESULT_NAME = "stylized.png"
TRAJECTORY_NAME = "trajectory.gif"


class OutputStore:
    """Per-job folders with unguessable names under one root, each deleted ``ttl_s`` seconds after it was written.

    Args:
        root: where the folders go; a private temporary folder when omitted.
        ttl_s: seconds a job's files are kept.
    """

    def __init__(self, root: str | Path | None, ttl_s: float) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="stylizer-outputs-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s

    def save(self, result: Image.Image, frames: Sequence[Image.Image]) -> tuple[Path, Path]:
        """Write a finished job's result and trajectory into a new folder, after deleting expired ones.

        Returns:
            The paths of the PNG and of the GIF.
        """
        folder = self._new_folder()
        png = folder / RESULT_NAME
        result.save(png)
        return png, save_animation(frames, folder / TRAJECTORY_NAME)

    def write(self, files: Sequence[tuple[str, bytes]]) -> list[Path]:
        """Write a finished job's files, given as (name, bytes), into a new folder; returns their paths in order."""
        folder = self._new_folder()
        paths = [folder / name for name, _ in files]
        for path, (_, content) in zip(paths, files):
            path.write_bytes(content)
        return paths

    def _new_folder(self) -> Path:
        """A new, empty job folder, after deleting expired ones."""
        self.delete_expired()
        folder = self.root / f"job-{uuid.uuid4().hex}"
        folder.mkdir()
        return folder

    def delete_expired(self) -> None:
        """Delete every job folder older than the time to live."""
        cutoff = time.time() - self.ttl_s
        for folder in self.root.glob("job-*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue
