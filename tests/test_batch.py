"""``python -m stylizer batch``: outputs, resume, bad inputs, Ctrl-C, and the same batch on Ray Data.

Every job is the tiny preset at 64 px with 4 steps (2 denoising steps after 2 of inversion), about a
second on a CPU. The Ray tests share one local Ray instance, started once for this module.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylizer.cli import main
from stylizer.cli.batch import build_parser as build_batch_parser
from stylizer.cli.batch_plan import BatchItem, BatchSpec, batch_spec, file_sha256, is_finished, write_atomically
from stylizer.cli.ray_batch import RAY_MISSING, RayPictures, plan_actors
from stylizer.cli.stylize import build_parser
from stylizer.config import Limits

from .helpers import make_image

ROOT = Path(__file__).resolve().parents[1]
# Few patch crops too: they are most of a guided step's time.
SMALL = ["-p", "drawing with black ink", "--model", "tiny", "--size", "64", "--steps", "4", "--patches", "4"]


def make_inputs(folder: Path, count: int, prefix: str = "p") -> list[Path]:
    """``count`` distinct 64x48 pictures in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        make_image(64, 48, seed=i).save(path)
    return paths


def batch(capsys, *argv: str) -> tuple[int, dict, str]:
    """Run the batch command in-process with ``--json``: its exit status, its summary and its stderr."""
    code = main(["batch", *argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else {}, captured.err


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_writes_a_picture_and_its_record_per_input_and_notes_non_images(capsys, tmp_path):
    inputs = make_inputs(tmp_path / "in", 2)
    (tmp_path / "in" / "notes.txt").write_text("not a picture")
    extra = make_inputs(tmp_path / "more", 1, prefix="q")[0]
    out = tmp_path / "out"
    # The folder, a pattern, and one of the folder's files again (counted once).
    sources = (str(tmp_path / "in"), str(tmp_path / "more" / "*.png"), str(inputs[0]))
    code, report, err = batch(capsys, *sources, "-o", str(out), *SMALL, "--frames")
    assert code == 0, err
    assert report["done"] == [str(p) for p in (*inputs, extra)] and report["failed"] == [] and report["left"] == 0
    assert report["skipped"] == [str(tmp_path / "in" / "notes.txt")]
    assert f"note: skipped {tmp_path / 'in' / 'notes.txt'}: not an image file" in err
    assert "3 done (3 now, 0 earlier), 1 skipped, 0 failed" in err
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.{s}" for n in ("p0", "p1", "q0") for s in ("gif", "json", "png")]
    with Image.open(out / "p1.gif") as gif:
        assert gif.n_frames == 2  # after steps 1 and 2
    record = json.loads((out / "p1.json").read_text())
    assert record["input"] == str(inputs[1]) and record["input_sha256"] == file_sha256(inputs[1])
    assert (record["model"], record["device"], record["output"]) == ("tiny", "cpu", str(out / "p1.png"))
    assert record["settings"]["prompt"] == "drawing with black ink" and record["settings"]["steps"] == 4
    assert set(record["losses"]) == {"dir", "patch", "content", "tv"} and record["seconds"] > 0
    # The same picture as the single-picture command makes.
    single = tmp_path / "single.png"
    assert main([str(inputs[1]), "-o", str(single), *SMALL]) == 0
    assert np.array_equal(pixels(out / "p1.png"), pixels(single))


def test_a_rerun_does_only_what_is_left_and_overwrite_redoes_everything(capsys, tmp_path):
    inputs = make_inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL)[0] == 0
    first = mtimes(out)

    code, report, err = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL)
    assert code == 0 and report["done"] == [] and report["earlier"] == [str(p) for p in inputs]
    assert "3 done (0 now, 3 earlier)" in err and mtimes(out) == first

    # As if interrupted after p1's first record and its picture, before its whole record; and p2 replaced by another picture.
    record = json.loads((out / "p1.json").read_text())
    (out / "p1.json").write_text(json.dumps({k: v for k, v in record.items() if k not in ("losses", "seconds")}))
    make_image(64, 48, seed=9).save(inputs[2])
    code, report, err = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL)
    assert code == 0 and report["done"] == [str(inputs[1]), str(inputs[2])] and report["earlier"] == [str(inputs[0])]
    second = mtimes(out)
    assert second["p0.png"] == first["p0.png"] and second["p2.png"] != first["p2.png"]
    assert json.loads((out / "p2.json").read_text())["input_sha256"] == file_sha256(inputs[2])

    code, report, _ = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL, "--overwrite")
    assert code == 0 and len(report["done"]) == 3 and report["earlier"] == []
    assert all(mtimes(out)[name] != second[name] for name in second)


def test_a_record_counts_as_finished_only_for_the_same_model_settings_and_input(tmp_path):
    picture = make_inputs(tmp_path / "in", 1)[0]
    spec, _ = batch_spec(tmp_path, "tiny", {"prompt": "ink", "size": 64}, Limits())
    item = BatchItem(str(picture), "p0", file_sha256(picture))
    (tmp_path / "p0.png").write_bytes(b"png")

    def finished(record: dict, spec: BatchSpec = spec) -> bool:
        (tmp_path / "p0.json").write_text(json.dumps(record))
        return is_finished(item, spec)

    record = {**spec.identity, "input_sha256": item.sha256, "seconds": 1.0}
    assert finished(record)
    assert not finished({**record, "input_sha256": "0" * 64})
    assert not finished({**record, "model": "tiny-latent"})
    assert not finished({**record, "settings": {**record["settings"], "seed": 1}})
    other, _ = batch_spec(tmp_path, "tiny", {"prompt": "ink", "size": 64, "w_content": 5}, Limits())
    assert not finished({**record}, other)
    frames, _ = batch_spec(tmp_path, "tiny", {"prompt": "ink", "size": 64}, Limits(), frames=True)
    assert not finished(record, frames)  # its GIF is missing
    (tmp_path / "p0.png").unlink()
    assert not finished(record)


def test_refused_inputs_are_named_and_skipped_and_the_run_goes_on(capsys, tmp_path):
    folder = tmp_path / "in"
    good = make_inputs(folder, 2)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(folder / "small.png")
    out = tmp_path / "out"
    code, report, err = batch(capsys, str(folder), "-o", str(out), *SMALL)
    assert code == 3
    reasons = {Path(f["input"]).name: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"corrupt.png", "empty.jpg", "small.png"}
    assert "truncated or corrupt" in reasons["corrupt.png"] and "empty" in reasons["empty.jpg"] and "at least 16 px" in reasons["small.png"]
    assert report["done"] == [str(p) for p in good]
    summary = err[err.index("2 done (2 now, 0 earlier), 0 skipped, 3 failed") :]
    for name, reason in reasons.items():
        assert f"failed: {folder / name}: {reason}" in summary
    assert sorted(p.name for p in out.iterdir()) == ["p0.json", "p0.png", "p1.json", "p1.png"]


def test_a_picture_too_thin_for_the_size_is_named_with_the_limit_and_the_rest_are_done(capsys, tmp_path):
    folder = tmp_path / "in"
    make_inputs(folder, 1)
    make_image(16, 128).save(folder / "thin.png")
    code, report, err = batch(capsys, str(folder), "-o", str(tmp_path / "out"), *SMALL)
    assert code == 3 and len(report["done"]) == 1, err
    [failed] = report["failed"]
    assert failed["input"] == str(folder / "thin.png") and "it needs at least 16 px: set size to 124 or more" in failed["reason"]


def test_two_inputs_of_one_name_are_refused_before_any_work(capsys, tmp_path):
    make_inputs(tmp_path / "a", 1)
    make_image(64, 48).save(tmp_path / "b.jpg")
    (tmp_path / "b").mkdir()
    make_image(64, 48).save(tmp_path / "b" / "P0.jpg")
    out = tmp_path / "out"
    code, _, err = batch(capsys, str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), *SMALL)
    assert code == 2 and not out.exists()
    assert f"{tmp_path / 'a' / 'p0.png'} and {tmp_path / 'b' / 'P0.jpg'} would both be written as P0.png" in err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--actors", "2"], "--actors needs --ray"),
        (["--ray", "photos"], "--ray photos: give auto, HOST:PORT"),
        (["--ray", "--actors", "0"], "must be at least 1"),
        (["--steps", "0"], "steps must be between"),
        (["--mask", "/nowhere/mask.png"], "the mask: no such image file"),
    ],
)
def test_bad_options_exit_2_with_one_line_before_any_work(capsys, tmp_path, extra, fragment):
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, _, err = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL, *extra)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_missing_inputs_and_an_output_that_is_a_file_exit_2(capsys, tmp_path):
    make_inputs(tmp_path / "in", 1)
    code, _, err = batch(capsys, str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"), *SMALL)
    assert code == 2 and "does not exist" in err
    code, _, err = batch(capsys, str(tmp_path / "in" / "*.webp"), "-o", str(tmp_path / "out"), *SMALL)
    assert code == 2 and "no file matches" in err
    (tmp_path / "file").write_text("")
    code, _, err = batch(capsys, str(tmp_path / "in"), "-o", str(tmp_path / "file"), *SMALL)
    assert code == 2 and "is not a folder" in err


def test_a_batch_into_its_own_folder_never_replaces_an_input(capsys, tmp_path):
    """photo.png's result would be photo.png: refused before any work (exit 2), naming it; nothing is written."""
    folder = tmp_path / "in"
    [photo, *_] = make_inputs(folder, 2)
    before = mtimes(folder)
    code, _, err = batch(capsys, str(folder), "-o", str(folder), *SMALL)
    assert code == 2 and f"{photo} is an input, and its result would replace it" in err and "another folder" in err
    assert mtimes(folder) == before
    code, _, err = batch(capsys, str(folder), "-o", str(folder), *SMALL, "--overwrite")  # --overwrite redoes results, not inputs
    assert code == 2 and mtimes(folder) == before


@pytest.mark.parametrize("stray", ["p0.png", "p0.json", "p0.gif"])
def test_a_file_of_an_outputs_name_that_no_batch_wrote_is_never_replaced(capsys, tmp_path, stray):
    """A stray p0.png (or .json, or .gif with --frames) beside the inputs is no result: refused before any work, and kept."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image(64, 48, seed=1).save(folder / "p0.jpg")
    (folder / stray).write_bytes(b"someone else's file")
    code, _, err = batch(capsys, str(folder / "p0.jpg"), "-o", str(folder), *SMALL, "--frames")
    assert code == 2 and f"{folder / stray} exists and is not a result of stylizer batch" in err
    assert (folder / stray).read_bytes() == b"someone else's file"


def test_results_in_the_inputs_folder_are_resumed_and_redone_as_results(capsys, tmp_path):
    """JPEG inputs with their results beside them: a rerun leaves them, --overwrite redoes them (they are this command's)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        make_image(64, 48, seed=i).save(folder / f"p{i}.jpg")
    inputs = [str(folder / "p0.jpg"), str(folder / "p1.jpg")]
    code, report, err = batch(capsys, *inputs, "-o", str(folder), *SMALL)
    assert code == 0 and len(report["done"]) == 2, err
    code, report, _ = batch(capsys, *inputs, "-o", str(folder), *SMALL)
    assert code == 0 and len(report["earlier"]) == 2
    code, report, _ = batch(capsys, *inputs, "-o", str(folder), *SMALL, "--overwrite")
    assert code == 0 and len(report["done"]) == 2


def test_an_interrupted_write_leaves_no_part_of_a_file(tmp_path):
    target = tmp_path / "p0.png"
    target.write_bytes(b"the earlier, whole file")

    def write_half(path: Path) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, "t0ken", write_half)
    assert [p.name for p in tmp_path.iterdir()] == ["p0.png"] and target.read_bytes() == b"the earlier, whole file"


def test_ctrl_c_ends_with_whole_files_a_summary_and_status_130(capsys, tmp_path):
    inputs = make_inputs(tmp_path / "in", 6)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stylizer", "batch", str(tmp_path / "in"), "-o", str(out), *SMALL]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # A record in place, not its temporary file (which pathlib's glob also matches, dot and all).
        while not [p for p in out.glob("*.json") if not p.name.startswith(".")]:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no picture finished in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "left: interrupted; run the same command again to finish" in err and "Traceback" not in err
    names = [p.name for p in out.iterdir()]
    assert not [name for name in names if name.startswith(".") or "partial" in name], names
    records = sorted(out.glob("*.json"))
    assert 1 <= len(records) < len(inputs)
    for record in records:
        assert pixels(out / json.loads(record.read_text())["output"]).shape == (48, 64, 3)

    code, report, _ = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL)
    assert code == 0 and len(report["earlier"]) == len(records) and len(report["done"]) == len(inputs) - len(records)


def test_ray_without_ray_installed_exits_2_saying_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    make_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    code, _, err = batch(capsys, str(tmp_path / "in"), "-o", str(out), *SMALL, "--ray")
    assert code == 2 and err.strip() == f"stylizer: error: {RAY_MISSING}" and not out.exists()
    assert "pip install -r requirements-ray.txt" in RAY_MISSING


def node(cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


@pytest.mark.parametrize(
    "nodes, actors, device, expected",
    [
        ([node(16, 4), node(16, 4)], None, None, (8, 1, 1)),  # an actor per GPU
        ([node(16, 4)], 2, "cuda", (2, 1, 1)),
        ([node(16, 4)], None, "cpu", (1, 16, 0)),  # CPU actors on a GPU node when asked
        ([node(8), node(8), node(64, alive=False)], None, None, (2, 8, 0)),  # an actor per live node, its CPUs
        ([node(8), node(8)], 4, None, (4, 4, 0)),  # the CPUs shared out
        ([node(8), node(2)], None, None, (2, 2, 0)),  # never more than the smallest node has
        ([node(2)], 3, None, (3, 1, 0)),
    ],
)
def test_the_actor_pool_fits_the_cluster(nodes, actors, device, expected):
    pool = plan_actors(nodes, actors, device)
    assert (pool.actors, pool.cpus, pool.gpus) == expected


def test_cuda_on_a_cluster_without_gpus_is_refused():
    with pytest.raises(ValueError, match="the Ray cluster has no GPU"):
        plan_actors([node(8)], None, "cuda:0")


def test_an_actor_that_cannot_load_its_models_says_why_in_a_row(tmp_path):
    """Raised in the actor, the error would come back as an actor-death traceback; the driver turns this row into exit 2."""
    picture = make_inputs(tmp_path, 1)[0]
    spec, _ = batch_spec(tmp_path / "out", "tiny", {"prompt": "ink", "size": 64}, Limits(), device="cuda:7")
    rows = {"path": np.array([str(picture)]), "name": np.array(["p0"]), "sha256": np.array([file_sha256(picture)])}
    [row] = RayPictures(spec, None)(rows)["outcome"]
    assert "no CUDA GPU" in json.loads(row)["error"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for this module's Ray tests; the command uses it as it finds it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_writes_the_same_files_as_a_local_run(local_ray, capsys, tmp_path):
    folder = tmp_path / "in"
    make_inputs(folder, 3)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("not a picture")
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    # One actor with the instance's 2 CPUs runs torch on 2 threads, like this process: bit-identical results.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local_code, local_report, _ = batch(capsys, str(folder), "-o", str(local), *SMALL)
    finally:
        torch.set_num_threads(threads)
    code, report, err = batch(capsys, str(folder), "-o", str(ray_out), *SMALL, "--ray", "--actors", "1")
    assert (code, local_code) == (3, 3), err
    # Ray reports the pictures as they finish, in any order.
    assert {k: sorted(v) if isinstance(v, list) else v for k, v in report.items()} == {
        k: sorted(v) if isinstance(v, list) else v for k, v in local_report.items()
    }
    assert len(report["done"]) == 3 and report["failed"] == [
        {"input": str(folder / "corrupt.png"), "reason": report["failed"][0]["reason"]}
    ]
    assert sorted(p.name for p in ray_out.iterdir()) == sorted(p.name for p in local.iterdir())
    for png in local.glob("*.png"):
        assert np.array_equal(pixels(png), pixels(ray_out / png.name)), png.name
    for record in local.glob("*.json"):
        mine, theirs = json.loads(record.read_text()), json.loads((ray_out / record.name).read_text())
        assert {k: v for k, v in mine.items() if k not in ("output", "seconds")} == {
            k: v for k, v in theirs.items() if k not in ("output", "seconds")
        }

    # A local rerun takes the Ray run's records as its own: only the corrupt picture is tried again.
    before = mtimes(ray_out)
    code, report, _ = batch(capsys, str(folder), "-o", str(ray_out), *SMALL)
    assert code == 3 and report["done"] == [] and len(report["earlier"]) == 3 and mtimes(ray_out) == before


def test_batch_takes_every_option_of_the_single_picture_command():
    single = {flag for action in build_parser()._actions for flag in action.option_strings}
    many = {flag for action in build_batch_parser()._actions for flag in action.option_strings}
    assert single <= many and many - single == {"--ray", "--actors"}


@pytest.mark.parametrize("command", [[], ["batch"]], ids=["stylize", "batch"])
def test_help_lists_the_options(capsys, command):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "--mask-feather" in out and "2 % of the long side" in out
    assert ("--ray" in out) == bool(command)


def test_joining_a_token_protected_cluster_without_its_token_is_one_line_naming_the_variables(local_ray, tmp_path):
    """Ray 2.59+ clusters want a token; a machine without it (another HOME, no RAY_AUTH_TOKEN) is told what to set, in one line."""
    address = local_ray.get_runtime_context().gcs_address
    make_inputs(tmp_path / "in", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env["HOME"] = str(tmp_path / "elsewhere")  # no ~/.ray/auth_token there
    argv = [sys.executable, "-m", "stylizer", "batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *SMALL, "--ray", address]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("stylizer: error:")]
    assert proc.returncode == 2 and len(ours) == 1, proc.stderr[-2000:]
    assert f"could not join the Ray cluster at {address}" in ours[0] and "RAY_AUTH_TOKEN" in ours[0] and "RAY_AUTH_TOKEN_PATH" in ours[0]
