"""Stylize first, then live previews, then background preparations: the device pool, the worker and the page's requests."""

import threading
import time

import pytest

from stylizer.serving.pool import DevicePool, Priority
from stylizer.serving.worker import Worker
from stylizer.ui.requests import PREPARE, PREVIEW, PageRequests

from .apphelpers import wait_until_idle
from .helpers import make_image

SHORT = {"prompt": "ink", "size": 64, "steps": 4, "strength": 0.5, "n_patches": 4}
# A long inversion (no guidance runs while preparing), so there is time to cut in.
LONG = {**SHORT, "steps": 400, "strength": 1.0, "preview_steps": 400, "preview_size": 64}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    return Worker("tiny", ["cpu"], output_dir=tmp_path_factory.mktemp("outputs"))


@pytest.fixture
def passes(worker, monkeypatch):
    """Every UNet pass as (thread name, start time)."""
    backend = worker.replicas["cpu"].backend
    seen, eps = [], backend.eps

    def recording_eps(*args, **kwargs):
        seen.append((threading.current_thread().name, time.monotonic()))
        return eps(*args, **kwargs)

    monkeypatch.setattr(backend, "eps", recording_eps)
    return seen


def in_background(fn, *args):
    """Run ``fn(*args)`` on a thread; returns the thread and a list that will hold its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), name="background", daemon=True)
    thread.start()
    return thread, result


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_pool_serves_stylize_then_previews_then_preparations_first_come_first_served():
    pool = DevicePool(["gpu"])
    busy = pool.take(pool.join(Priority.STYLIZE), 1)
    tickets = [pool.join(p) for p in (Priority.PREPARE, Priority.PREVIEW, Priority.PREPARE, Priority.STYLIZE, Priority.PREVIEW)]
    assert pool.outranked(Priority.PREVIEW) and pool.outranked(Priority.PREPARE) and not pool.outranked(Priority.STYLIZE)
    order = []
    for _ in tickets:
        pool.release(busy)
        ready = [t for t in tickets if t not in order and pool.take(t, 0.01) is not None]
        assert len(ready) == 1
        order.append(ready[0])
    assert order == [tickets[3], tickets[1], tickets[4], tickets[0], tickets[2]]
    pool.release(busy)
    assert pool.idle


def test_a_preparation_steps_aside_for_another_users_stylize_within_one_step(worker, passes, picture):
    stop = threading.Event()
    thread, result = in_background(worker.prepare, worker.check(picture, LONG, preparing=True), stop.is_set)
    wait_for(lambda: len(passes) >= 3)
    joined = time.monotonic()
    updates = list(worker.run(worker.check(make_image(seed=3), SHORT)))
    assert updates[-1].result is not None
    job = [t for name, t in passes if name.startswith("stylizer-job")]
    cut_in = [t for name, t in passes if name == "background" and joined < t < job[0]]
    assert len(cut_in) <= 1, f"the Stylize job waited behind {len(cut_in)} preparation steps"
    wait_for(lambda: any(name == "background" and t > job[-1] for name, t in passes))  # the preparation goes on afterwards
    stop.set()
    thread.join(30)
    assert result == [False] and wait_until_idle(worker)


def superseded_mid_job(passes, job, *args):
    """Run ``job(*args, cancelled)`` in the background, supersede it after two passes; its result, once it ended within a pass."""
    superseded = threading.Event()
    thread, result = in_background(job, *args, superseded.is_set)
    wait_for(lambda: len(passes) >= 2)
    superseded.set()
    at = time.monotonic()
    thread.join(30)
    assert not thread.is_alive() and sum(t > at for _, t in passes) <= 1, "it went on after it was superseded"
    return result


def test_a_superseded_preparation_ends_within_a_step_and_a_finished_one_says_ready(worker, passes, picture):
    assert superseded_mid_job(passes, worker.prepare, worker.check(picture, LONG, preparing=True)) == [False]
    assert worker.prepare(worker.check(picture, SHORT, preparing=True), lambda: False, True) is True
    reused = [u for u in worker.run(worker.check(picture, SHORT)) if u.reused]
    assert len(reused) == 1  # the Stylize job starts from the prepared picture
    assert wait_until_idle(worker)


def test_a_preview_is_small_and_final_and_steps_aside_for_stylize(worker, passes, picture):
    done = worker.preview(worker.check(picture, {**SHORT, "preview_size": 32, "preview_steps": 4}), lambda: False)
    assert done.image.size == (32, 24) and done.step == done.total == 2 and done.result is None
    before = len(passes)  # the small preview's own passes
    thread, result = in_background(worker.preview, worker.check(picture, LONG), lambda: False)
    wait_for(lambda: len(passes) >= before + 3)
    assert list(worker.run(worker.check(make_image(seed=4), SHORT)))[-1].result is not None
    thread.join(30)
    assert result == [None]  # the preview gave way and ended
    assert wait_until_idle(worker)


def test_a_superseded_preview_ends_within_a_step(worker, passes, picture):
    assert superseded_mid_job(passes, worker.preview, worker.check(picture, LONG)) == [None]
    assert wait_until_idle(worker)


def test_page_requests_supersede_stop_and_close():
    requests = PageRequests()
    first = requests.issue(PREVIEW, "page")
    assert not requests.cancelled(PREVIEW, "page", first)
    second = requests.issue(PREVIEW, "page")  # a newer change
    assert requests.cancelled(PREVIEW, "page", first) and not requests.cancelled(PREVIEW, "page", second)
    assert not requests.cancelled(PREVIEW, "other page", requests.issue(PREVIEW, "other page"))
    requests.stop("page")  # Stop ends a preview
    assert requests.cancelled(PREVIEW, "page", second)
    third = requests.issue(PREVIEW, "page")
    requests.arm("page")  # so does Stylize
    assert requests.cancelled(PREVIEW, "page", third)
    upload = requests.issue(PREPARE, "page")
    requests.stop("page")  # but not a preparation: the next Stylize wants it
    assert not requests.cancelled(PREPARE, "page", upload)
    newest = requests.issue(PREPARE, "page")  # a newer upload
    assert requests.cancelled(PREPARE, "page", upload) and not requests.cancelled(PREPARE, "page", newest)
    requests.forget("page")  # the page closed
    assert requests.cancelled(PREPARE, "page", newest)
    assert not requests.cancelled(PREVIEW, "api", None)  # API calls: nothing issued them, nothing supersedes them
