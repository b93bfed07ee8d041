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

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models():
    """The untrained ``tiny`` preset on the CPU, loaded once."""
    from stylizer.models import load_models

    return load_models("tiny", "cpu")


def swapped_primaries_profile() -> bytes:
    """A valid ICC profile that is sRGB with its red and blue primaries swapped.

    Pixels tagged with it change visibly (red reads as blue) when converted to sRGB, so a
    test can tell whether the profile was applied; an sRGB profile would be a no-op.
    """
    import struct

    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", data, 128)
    entries = {struct.unpack_from(">4s", data, 132 + 12 * i)[0]: 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    # Swap where the two primaries' tags point; the tag signatures stay in place.
    data[red + 4 : red + 12], data[blue + 4 : blue + 12] = data[blue + 4 : blue + 12], data[red + 4 : red + 12]
    return bytes(data)


def make_image(width: int = 80, height: int = 60, seed: int = 0) -> Image.Image:
    """A smooth, structured RGB test picture (gradients plus a disc)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    disc = ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.25) ** 2).astype(np.float32)
    b = 0.3 + 0.6 * disc
    arr = np.stack([r, g, b], axis=-1) + rng.normal(0, 0.02, (height, width, 3))
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), mode="RGB")


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
