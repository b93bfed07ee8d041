"""Test isolation: private caches, no network, no analytics; shared tiny models and images."""

import os
import tempfile

# Before any library import: the Hub and torch caches are read when those libraries load.
_ROOT = tempfile.mkdtemp(prefix="stylizer-tests-")
os.environ["HF_HOME"] = os.path.join(_ROOT, "hf")
os.environ["HF_HUB_CACHE"] = os.path.join(_ROOT, "hf", "hub")
os.environ["TORCH_HOME"] = os.path.join(_ROOT, "torch")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_ROOT, "gradio")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
from huggingface_hub import constants  # noqa: E402
from PIL import Image  # noqa: E402

from .helpers import make_image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models():
    """The untrained ``tiny`` preset on the CPU, loaded once."""
    from stylizer.loading import load_models

    return load_models("tiny", "cpu")


@pytest.fixture
def private_hub_cache(tmp_path, monkeypatch) -> None:
    """An empty Hub cache for this test alone, so the files it lays out do not outlive it."""
    cache = str(tmp_path / "hf-hub")
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)  # huggingface_hub read the variable at import


@pytest.fixture
def private_caches(private_hub_cache, tmp_path, monkeypatch) -> None:
    """Empty Hub and torch caches for this test alone, whatever other tests left in the session's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def picture() -> Image.Image:
    """An 80x60 test picture."""
    return make_image()


@pytest.fixture
def picture_path(tmp_path, picture) -> str:
    """The test picture saved as PNG."""
    path = tmp_path / "input.png"
    picture.save(path)
    return str(path)
