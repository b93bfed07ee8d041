"""Fetching files from the Hugging Face Hub through its own cache (``HF_HOME``).

When the Hub cannot be reached (or ``HF_HUB_OFFLINE=1``), every fetch reads the
cache only, so an offline machine with a warm cache starts at once instead of
retrying the network for each file.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError

from ..config import environment

HUB_PROBE_TIMEOUT_S = 3.0


def offline_requested() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value, now or when huggingface_hub was imported."""
    # huggingface_hub reads the variable once at import; the app may set it later, so read it again.
    return constants.HF_HUB_OFFLINE or environment.read("HF_HUB_OFFLINE").lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def hub_online() -> bool:
    """True when the network may be used: not :func:`offline_requested` and the Hub's host answers on port 443.

    One probe decides for the whole process, so an offline start does not wait on a timeout per file.
    """
    if offline_requested():
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Fetched:
    """One weights or config file made available locally.

    Attributes:
        source: the Hub repo id (or another origin, e.g. ``torchvision``).
        filename: the file's name within the source.
        path: where it lies in the cache.
        size: its size in bytes.
        downloaded: True if it came down now, False if it was already cached.
    """

    source: str
    filename: str
    path: Path
    size: int
    downloaded: bool


_recording: contextvars.ContextVar[list[Fetched] | None] = contextvars.ContextVar("stylizer_hub_recording", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[Fetched]]:
    """Collect a :class:`Fetched` entry for every file fetched inside the block."""
    log: list[Fetched] = []
    token = _recording.set(log)
    try:
        yield log
    finally:
        _recording.reset(token)


def record(entry: Fetched) -> None:
    """Add ``entry`` to the active :func:`recording`, if any (for files fetched outside the Hub)."""
    log = _recording.get()
    if log is not None:
        log.append(entry)


def fetch(repo_id: str, filename: str) -> Path:
    """Path of ``filename`` from ``repo_id`` in the local cache, downloading it if needed and possible.

    Raises:
        EntryNotFoundError: the repo has no such file (``LocalEntryNotFoundError``:
            it is not cached and the Hub cannot be reached).
    """
    cached = isinstance(try_to_load_from_cache(repo_id, filename), str)
    path = Path(hf_hub_download(repo_id, filename, local_files_only=not hub_online()))
    record(Fetched(repo_id, filename, path, path.stat().st_size, downloaded=not cached))
    return path


def fetch_first(repo_id: str, candidates: Sequence[str]) -> Path:
    """Fetch the first of ``candidates`` that the repo has (e.g. safetensors before a .bin)."""
    first_error: EntryNotFoundError | None = None
    for name in candidates:
        try:
            return fetch(repo_id, name)
        except EntryNotFoundError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def fetch_optional(repo_id: str, filename: str) -> Path | None:
    """Like :func:`fetch`, but ``None`` when the repo (or, offline, the cache) has no such file."""
    try:
        return fetch(repo_id, filename)
    except EntryNotFoundError:
        return None


def offline_reason() -> str:
    """Why the Hub is not used, for error messages (empty when it is online)."""
    if hub_online():
        return ""
    if offline_requested():
        return "HF_HUB_OFFLINE is set and the files are not in the cache"
    return f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached and the files are not in the cache ({constants.HF_HUB_CACHE})"
