"""The memory soak: many consecutive jobs against the app in a process of its own, and a verdict on its resident memory.

    python -m bench.soak [--jobs 100] [--runs 1] [--out FILE]

The app runs as deployed (``python app.py --model tiny``), so only its memory is measured: not the
client's, nor what a test process holds. Each job is one ``/stylize`` call at 64 px with 4 steps.
The resident size after each job makes a series, judged by :func:`verdict`: the first third warms up
(Gradio's and the allocator's caches); after it, the rise must stay under an absolute bound, and the
last third must have levelled off (grown no more than the middle third, give or take one allocator
step). The bounds come from repeated runs on this project's CI machine (README, *Limits and security*).
A real leak of objects (frames, tensors, files, sessions) is found exactly by ``tests/test_leaks.py``;
this soak is the coarse guard that also sees what no object count sees (the C heap, caches outside Python).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
JOB = {"size": 64, "steps": 4}
# Most the resident size may rise after the warm-up third, in MB over the other two thirds: 3x the largest rise
# in 10 runs of 100 jobs on the 2-core CI machine (9.7 MB; bench/results/cpu-2core-soak-2026-12-02.json).
BOUND_MB = 32.0
# An allocator takes one-off steps (a new arena, a grown pool): the largest growth within one third in those runs
# was 14.3 MB. One such step may fall in the last third without that being a trend.
STEP_MB = 24.0
# A third's growth compares the medians of its first and last quarter, so one odd sample moves nothing.
EDGE_FRACTION = 0.25


@dataclass(frozen=True)
class Verdict:
    """What a series of resident sizes says, in MB.

    Attributes:
        rise: from the start of the middle third to the end of the last one.
        middle, last: each third's own growth (its last quarter's median over its first quarter's).
        ok: the rise is within :data:`BOUND_MB`, and the last third grew no more than the middle one and :data:`STEP_MB`.
    """

    rise: float
    middle: float
    last: float
    ok: bool


def verdict(rss: list[float]) -> Verdict:
    """Judge a series of resident sizes (MB, one per job) as the module says."""
    third = len(rss) // 3
    if third < 4:
        raise ValueError(f"a soak needs at least 12 jobs, got {len(rss)}")
    middle, last = rss[third : 2 * third], rss[2 * third :]

    def start(part: list[float]) -> float:
        return statistics.median(part[: max(1, round(len(part) * EDGE_FRACTION))])

    def end(part: list[float]) -> float:
        return statistics.median(part[-max(1, round(len(part) * EDGE_FRACTION)) :])

    rise, grown_middle, grown_last = end(last) - start(middle), end(middle) - start(middle), end(last) - start(last)
    ok = rise <= BOUND_MB and grown_last <= max(grown_middle, 0.0) + STEP_MB
    return Verdict(rise, grown_middle, grown_last, ok)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def app_process(log: Path, *args: str, env: dict[str, str] | None = None, seconds: float = 120.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python app.py --model tiny --port <free> *args`` in a process of its own, as deployed, for the block.

    Yields (the process, its URL) once the server answers HTTP; its output goes to ``log``.
    """
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--model", "tiny", "--port", str(port), *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + seconds
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited: {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer within {seconds:.0f} s: {log.read_text()}")
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(30)


def rss_series(picture: str, jobs: int, folder: Path) -> list[float]:
    """The app's resident size (MB) after each of ``jobs`` consecutive jobs on ``picture``."""
    import psutil
    from gradio_client import Client, handle_file

    rss = []
    with app_process(folder / "app.log", env={"GRADIO_TEMP_DIR": str(folder / "gradio")}) as (proc, url):
        server, client = psutil.Process(proc.pid), Client(url, verbose=False)
        for i in range(jobs):
            client.predict(image=handle_file(picture), prompt=f"ink {i}", **JOB, api_name="/stylize")
            rss.append(server.memory_info().rss / 2**20)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs per run (default 100)")
    parser.add_argument("--runs", type=int, default=1, help="runs, each with a fresh app process (default 1)")
    parser.add_argument("--out", type=Path, help="JSON with every run's series and verdict")
    args = parser.parse_args()
    from stylizer.images import synthetic_picture

    runs = []
    with tempfile.TemporaryDirectory(prefix="stylizer-soak-") as tmp:
        picture = str(Path(tmp) / "picture.png")
        synthetic_picture(80, 60, noise=0.02).save(picture)
        for run in range(args.runs):
            folder = Path(tmp) / f"run-{run}"
            folder.mkdir()
            rss = rss_series(picture, args.jobs, folder)
            judged = verdict(rss)
            runs.append({"rss_mb": rss, **asdict(judged)})
            print(
                f"run {run}: {rss[0]:.0f} -> {rss[-1]:.0f} MB; after warm-up rise {judged.rise:.1f} MB, "
                f"middle third {judged.middle:+.1f}, last third {judged.last:+.1f}: {'ok' if judged.ok else 'FAILS'}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"jobs": args.jobs, "bound_mb": BOUND_MB, "step_mb": STEP_MB, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
