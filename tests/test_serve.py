"""``python app.py --ray``: the page in front of Ray Serve replicas (a local Ray instance, the tiny models on the CPU)."""

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app

from .apphelpers import api_args, call_raw, result_path

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 2
JOB = dict(prompt="drawing with black ink", size=64, steps=6, strength=1.0)
# Long enough (a few hundred network passes) that a job still running after Stop would hold its replica for a minute or more.
LONG_JOB = dict(prompt="ink", size=64, steps=400, strength=1.0)
# Seconds within which cancelled jobs free their replicas and a short job on each has finished.
FREE_WITHIN_S = 30


# The Ray tests get Ray from these fixtures (skipped without it); the flag tests run without Ray.
@pytest.fixture(scope="module")
def ray():
    return pytest.importorskip("ray")


@pytest.fixture(scope="module")
def serve():
    return pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def remote(ray, serve):
    """The app's own Ray set-up (``--ray --replicas 2``), served on a free port; yields (the page's URL, its worker)."""
    args = app.parse_args(["--model", "tiny", "--ray", "--replicas", str(REPLICAS), "--queue-size", "8"])
    try:
        demo, worker = app.create_app(args)
        _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, run_history=False)
        try:
            yield url, worker
        finally:
            demo.close()
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def url(remote):
    return remote[0]


def replicas() -> list:
    """Handles on the application's replica actors."""
    import ray

    from stylizer.serving.ray_replica import APP_NAME, DEPLOYMENT_NAME

    names = ray.util.list_named_actors(all_namespaces=True)
    prefix = f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}#"
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in names if a["name"].startswith(prefix)]


def busy_replicas() -> list:
    """The replicas running a request now."""
    import ray

    return [r for r in replicas() if ray.get(r.get_num_ongoing_requests.remote(), timeout=10)]


def wait_for_steps(job, count: int = 2) -> None:
    """Block until ``job`` has streamed ``count`` progress updates."""
    seen = 0
    for outputs in job:
        seen += "Step" in str(outputs[1]) or "Inverting" in str(outputs[1])
        if seen >= count:
            return
    raise AssertionError(f"the job ended before {count} updates: {job.outputs()[-1][1] if job.outputs() else None}")


def test_the_serve_config_deploys_the_application_builder(serve):
    from ray.serve.schema import ServeDeploySchema

    from stylizer.serving.ray_replica import APP_NAME, app_builder

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "deploy" / "serve_config.yaml").read_text()))
    (application,) = config.applications
    assert application.name == APP_NAME and application.import_path == "stylizer.serving.ray_replica:app_builder"
    built = app_builder({**application.args, "model": "tiny", "gpus": 1})
    deployment = built._bound_deployment
    assert deployment.num_replicas == application.args["replicas"] and deployment.ray_actor_options["num_gpus"] == 1
    assert deployment.max_ongoing_requests == 1


def test_ray_without_ray_installed_exits_2_with_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    assert app.main(["--model", "tiny", "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stylizer: error: --ray needs Ray Serve: pip install -r requirements-ray.txt"]


def test_the_ray_flags_and_their_environment_variables(monkeypatch):
    assert app.parse_args([]).ray is None
    assert (app.parse_args(["--ray"]).ray, app.parse_args(["--ray", "auto"]).ray) == ("local", "auto")
    monkeypatch.setenv("STYLIZER_RAY", "10.0.0.5:6379")
    monkeypatch.setenv("STYLIZER_REPLICAS", "3")
    monkeypatch.setenv("STYLIZER_RAY_APP", "ink")
    args = app.parse_args([])
    assert (args.ray, args.replicas, args.ray_app) == ("10.0.0.5:6379", 3, "ink")
    assert app.main(["--ray", "--replicas", "0"]) == 2  # one line, exit 2, before Ray starts


def test_four_clients_on_two_replicas_each_get_their_own_streamed_result(url, picture_path, tmp_path):
    from stylizer.serving.worker import Worker

    seeds = [3, 4, 5, 6]
    jobs = [Client(url, verbose=False).submit(image=handle_file(picture_path), **JOB, seed=s, api_name="/stylize") for s in seeds]
    updates: dict[int, list[str]] = {s: [] for s in seeds}

    def follow(seed, job):
        updates[seed] = [str(outputs[1]) for outputs in job]

    threads = [threading.Thread(target=follow, args=(s, j)) for s, j in zip(seeds, jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    served = {}
    for seed, job in zip(seeds, jobs):
        final = job.outputs()[-1]
        assert "Done" in final[1], final[1]
        assert json.loads(final[5])["seed"] == seed
        assert len(set(updates[seed])) > 2, updates[seed]  # progress streamed from the replica, not only the end
        served[seed] = np.asarray(Image.open(result_path(final[0])), dtype=np.int16)
        downloads = final[4]["value"] if isinstance(final[4], dict) else final[4]
        assert sorted(Path(result_path(f) or f).suffix for f in downloads) == [".gif", ".png"]
    # Each result is the one the in-process worker makes for its own seed, and unlike the others'.
    local = Worker("tiny", ["cpu"], output_dir=tmp_path)
    for seed in seeds:
        final = [u for u in local.run(local.check(picture_path, {**JOB, "seed": seed})) if u.result][-1]
        expected = np.asarray(final.result.image, dtype=np.int16)
        distances = {other: np.abs(served[other] - expected).mean() for other in seeds}
        assert distances[seed] < 1.0 and all(distances[seed] * 5 < d for o, d in distances.items() if o != seed), distances


def test_stop_cancels_the_remote_jobs_and_frees_their_replicas(url, picture_path):
    clients = [Client(url, verbose=False) for _ in range(REPLICAS)]
    long_jobs = [c.submit(image=handle_file(picture_path), **LONG_JOB, api_name="/stylize") for c in clients]
    for job in long_jobs:
        wait_for_steps(job)
    assert len(busy_replicas()) == REPLICAS
    for job in long_jobs:
        job.cancel()  # the page's Stop
    assert_replicas_free(
        lambda: "Done" in Client(url, verbose=False).predict(image=handle_file(picture_path), **JOB, api_name="/stylize")[1]
    )
    assert all("Done" not in str(job.outputs()[-1][1]) for job in long_jobs if job.outputs())


def test_closing_the_iterator_cancels_the_remote_job(remote, picture_path):
    _, worker = remote
    runs = [worker.run(worker.check(picture_path, LONG_JOB)) for _ in range(REPLICAS)]
    for updates in runs:
        for _ in zip(range(3), updates):
            pass
    assert len(busy_replicas()) == REPLICAS
    for updates in runs:
        updates.close()
    assert_replicas_free(lambda: next(u for u in worker.run(worker.check(picture_path, JOB)) if u.result).result.png_path.exists())


def assert_replicas_free(short_job: Callable[[], bool]) -> None:
    """Every replica takes a new job at once after its job was cancelled, and one short job on each finishes soon.

    A job that kept running would hold its replica's request slot, or its device in the
    replica's worker, for a minute or more.
    """
    deadline = time.monotonic() + FREE_WITHIN_S
    while busy_replicas():
        assert time.monotonic() < deadline, "a replica still runs its cancelled job"
        time.sleep(0.1)
    with ThreadPoolExecutor(REPLICAS) as pool:
        assert all(pool.map(lambda _: short_job(), range(REPLICAS)))
    assert time.monotonic() < deadline, "a cancelled job kept running on its replica"


def test_a_replica_killed_mid_job_gives_a_clear_error_and_the_next_job_succeeds(ray, serve, url, picture_path):
    from stylizer.serving.ray_replica import APP_NAME, DEPLOYMENT_NAME

    client = Client(url, verbose=False)
    job = client.submit(image=handle_file(picture_path), **LONG_JOB, api_name="/stylize")
    wait_for_steps(job)
    (busy,) = busy_replicas()
    ray.kill(busy)
    with pytest.raises(AppError, match="The server running this job stopped before it finished; please try again"):
        job.result(timeout=60)
    assert "Done" in client.predict(image=handle_file(picture_path), **JOB, api_name="/stylize")[1]
    # Serve starts a replica in the dead one's place.
    deadline = time.monotonic() + 120
    while serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0) < REPLICAS:
        assert time.monotonic() < deadline, serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
        time.sleep(0.5)


def test_the_local_ray_instance_runs_no_dashboard(ray, remote):
    assert not ray._private.worker.global_worker.node.address_info.get("webui_url")


def test_with_ray_a_device_file_is_refused_on_the_pages_host_before_anything_is_read(url, picture_path):
    """{"path": "/dev/zero"} once grew the app by GBs reading it for a replica: now it is not an upload, and nothing is read."""
    text = call_raw(url, api_args({"path": "/dev/zero"}))
    assert "event: error" in text and "must come with the request" in text, text[-300:]
    assert "Done" in Client(url, verbose=False).predict(image=handle_file(picture_path), **JOB, api_name="/stylize")[1]


def test_with_ray_an_upload_over_the_cap_is_refused_by_its_size_before_it_is_read(url, tmp_path, monkeypatch):
    """A file over STYLIZER_MAX_UPLOAD_MB in the upload folder (as if uploaded) is measured, not read, and never shipped to a replica."""
    from gradio.utils import get_upload_folder

    big = Path(get_upload_folder()) / f"big-{tmp_path.name}.png"
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as file:
        file.truncate(64 * 2**20)  # sparse: 64 MB on paper, nothing on disk
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    try:
        text = call_raw(url, api_args({"path": str(big)}))
    finally:
        big.unlink()
    assert "event: error" in text and "the file is 64.0 mb; the limit is" in text.lower(), text[-300:]
    assert big not in read
