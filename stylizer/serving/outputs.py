"""A job's files on the server: the result PNG and the trajectory GIF, in per-job folders that expire.

A server that is given no folder keeps them in a private temporary one, named after its process,
which it removes when it exits cleanly; at start it removes such folders that earlier processes
(ended without cleaning up: a crash, SIGKILL) left and that are older than the time to live.
"""

from __future__ import annotations

import atexit
import os
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
# A private folder's name: this prefix, the owning process's id, a dash and random letters.
PRIVATE_PREFIX = "stylizer-outputs-"


class OutputStore:
    """Per-job folders with unguessable names under one root, each deleted ``ttl_s`` seconds after it was written.

    Args:
        root: where the folders go; a private temporary folder when omitted.
        ttl_s: seconds a job's files are kept.
    """

    def __init__(self, root: str | Path | None, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        if root:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
            return
        delete_stale_private_folders(ttl_s)
        self.root = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

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
        folder.mkdir(parents=True)
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


def delete_stale_private_folders(ttl_s: float, parent: str | Path | None = None) -> None:
    """Remove the private output folders (see :class:`OutputStore`) of processes that no longer run, once older than ``ttl_s``.

    Args:
        parent: where they are (default: the system's temporary folder).
    """
    cutoff = time.time() - ttl_s
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*"):
        owner = folder.name[len(PRIVATE_PREFIX) :].split("-", 1)[0]
        try:
            if folder.stat().st_mtime < cutoff and not (owner.isdigit() and _running(int(owner))):
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            continue


def _running(pid: int) -> bool:
    """Whether a process of this id runs now (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
