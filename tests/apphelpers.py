"""Shared helpers for tests that launch the app in-process."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx
from gradio_client.client import Job
from gradio_client.utils import Status

from stylizer.config import Limits, StyleConfig
from stylizer.serving.worker import Worker
from stylizer.ui import api_parameters, build_demo
from stylizer.ui.mcp import return_every_output

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def served(demo: gr.Blocks, **launch_kwargs) -> Iterator[str]:
    """Launch ``demo`` on 127.0.0.1 (a free port) for the duration of the block; yields its URL."""
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, run_history=False, **launch_kwargs)
    return_every_output(demo)  # as app.serve does
    try:
        yield url
    finally:
        demo.close()


@contextmanager
def serving(worker: Worker, limits: Limits, max_file_size: str) -> Iterator[str]:
    """The page around ``worker`` (Stylize, live previews, background preparation), served with Gradio's upload cap set to ``max_file_size``; yields its URL."""
    demo = build_demo(worker, limits, previews=True, preparation=True)
    with served(demo, max_file_size=max_file_size) as url:
        yield url


def job_threads() -> list[threading.Thread]:
    """The worker threads currently running a job."""
    return [t for t in threading.enumerate() if t.name.startswith("stylizer-job")]


def wait_until_idle(worker: Worker, seconds: float = 30.0) -> bool:
    """True once no job thread runs and every device is back in the worker's pool."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not job_threads() and worker.pool.idle:
            return True
        time.sleep(0.1)
    return False


# A job in one of these states holds its place in the server's queue.
_QUEUED = {Status.IN_QUEUE, Status.PROCESSING, Status.ITERATING, Status.PROGRESS, Status.SENDING_DATA, Status.FINISHED}


def wait_until_queued(job: Job, running: bool = False, seconds: float = 60.0) -> None:
    """Block until ``job`` has joined the server's queue (or, with ``running``, until it runs).

    Tests of queue order submit the next job only after this, since ``Client.submit``
    uploads and joins from a background thread and a fixed sleep can lose that race.
    """
    wanted = _QUEUED - {Status.IN_QUEUE} if running else _QUEUED
    deadline = time.monotonic() + seconds
    while job.status().code not in wanted:
        assert time.monotonic() < deadline, f"the job never reached {sorted(s.name for s in wanted)}"
        time.sleep(0.02)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~100-byte PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def result_path(output) -> str | None:
    """The file path of an image output as gradio_client returns it: a path, or None before the first frame."""
    assert output is None or isinstance(output, str), f"the API returned {output!r}, not a file path"
    return output


def call_raw(server: str, data: list) -> str:
    """POST the /stylize API with raw JSON (which may hold NaN) and return the SSE stream's text."""
    body = json.dumps({"data": data}, allow_nan=True)
    with httpx.Client(base_url=server, timeout=60) as http:
        response = http.post("/gradio_api/call/stylize", content=body, headers={"content-type": "application/json"})
        if response.status_code != 200:
            return response.text
        event_id = response.json()["event_id"]
        return http.get(f"/gradio_api/call/stylize/{event_id}").text


def upload(server: str, path: str) -> dict:
    with httpx.Client(base_url=server, timeout=60) as http, open(path, "rb") as file:
        response = http.post("/gradio_api/upload", files={"files": file})
        return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


def api_args(image: dict, **overrides) -> list:
    """Every /stylize parameter, positionally, as a raw REST caller must send them: a short job unless overridden."""
    values = {**StyleConfig().to_dict(), "prompt": "ink", "steps": 4, "n_patches": 8, "patch_size": 64, "size": 64}
    values.update({"image": image, "randomize_seed": False, "mask": None, "style_image": None, **overrides})
    return [values[name] for name in api_parameters()]
