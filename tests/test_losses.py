"""The four losses on hand-made tensors and through the job's objective, the batched perspective crops, and the text embeddings."""

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylizer.config import StyleConfig
from stylizer.engine import encoders, losses
from stylizer.engine.objective import StyleObjective
from stylizer.engine.tensors import to_tensor
from stylizer.loading.build import build_clip
from stylizer.loading.presets import TINY_CLIP_ARCH


def test_directional_loss_is_zero_when_parallel_and_two_when_opposite():
    delta_text = torch.tensor([0.3, -1.2, 2.0])
    assert losses.directional_loss(delta_text[None] * 5.0, delta_text).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.directional_loss(-delta_text[None], delta_text).item() == pytest.approx(2.0, abs=1e-6)
    orthogonal = torch.tensor([[2.0, 0.5, 0.0]])  # dot product with delta_text is 0
    assert losses.directional_loss(orthogonal, delta_text).item() == pytest.approx(1.0, abs=1e-6)


def test_patch_threshold_zeroes_patches_below_tau():
    source = torch.zeros(1, 2)
    delta_text = torch.tensor([1.0, 0.0])
    # Crop directions at 0°, 90° and 180° from the text direction: losses 0, 1 and 2.
    crops = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert losses.patch_directional_loss(crops, source, delta_text, threshold=0.0).item() == pytest.approx(1.0)
    # τ = 0.7 drops the aligned crop (loss 0) but keeps 1 and 2: mean over all 3 crops.
    assert losses.patch_directional_loss(crops, source, delta_text, threshold=0.7).item() == pytest.approx(1.0)
    # τ = 1.5 also drops the orthogonal crop.
    assert losses.patch_directional_loss(crops, source, delta_text, threshold=1.5).item() == pytest.approx(2 / 3)
    assert losses.patch_directional_loss(crops, source, delta_text, threshold=2.1).item() == 0.0


def test_content_loss_is_zero_for_identical_features_and_positive_otherwise():
    feats = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2)]
    assert losses.content_loss(feats, [f.clone() for f in feats]).item() == 0.0
    assert losses.content_loss(feats, [f + 0.5 for f in feats]).item() == pytest.approx(0.5, rel=1e-5)


def test_objective_content_loss_is_zero_on_the_source_and_positive_on_another_image(tiny_models, picture):
    source = (to_tensor(picture, (64, 48)) + 1) / 2
    objective = StyleObjective(tiny_models.clip, tiny_models.vgg, source, StyleConfig(prompt="ink").validated())
    assert objective.measure(source)["content"] == pytest.approx(0.0, abs=1e-9)
    mirrored = (to_tensor(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (64, 48)) + 1) / 2
    assert objective.measure(mirrored)["content"] > 1e-3


def test_total_variation_is_zero_for_constant_and_known_for_stripes():
    assert losses.total_variation(torch.full((1, 3, 8, 8), 0.4)).item() == 0.0
    stripes = torch.zeros(1, 3, 8, 8)
    stripes[..., ::2] = 1.0  # alternating columns: every horizontal neighbour differs by 1
    assert losses.total_variation(stripes).item() == pytest.approx(1.0)


def test_perspective_crops_shape_determinism_and_content():
    image = torch.rand(1, 3, 48, 64)
    crops = losses.random_perspective_crops(image, 32, 24, 0.5, draws(5, 0))
    again = losses.random_perspective_crops(image, 32, 24, 0.5, draws(5, 0))
    other = losses.random_perspective_crops(image, 32, 24, 0.5, draws(5, 1))
    assert crops.shape == (5, 3, 24, 24)
    assert torch.equal(crops, again)
    assert not torch.equal(crops, other)
    # Crops only ever show pixels of the image (no fill colour from outside it).
    assert crops.min() >= image.min() - 1e-6 and crops.max() <= image.max() + 1e-6


def test_undistorted_full_crop_reproduces_the_image():
    image = torch.rand(1, 3, 16, 16)
    crops = losses.random_perspective_crops(image, 16, 16, 0.0, draws(1, 0))
    assert torch.allclose(crops[0], image[0], atol=1e-5)


def test_an_undistorted_crop_is_the_window_its_draws_place():
    image = torch.rand(1, 3, 40, 60)
    # Position draws (0.5, 1): the window's left edge halfway along the free width, its top at the bottom.
    window = torch.tensor([[0.5, 1.0] + [0.3] * 8])
    crops = losses.random_perspective_crops(image, 20, 20, 0.0, window)
    assert torch.allclose(crops[0], image[0, :, 20:40, 20:40], atol=1e-5)


def test_distortion_moves_each_corner_inwards_by_its_draw():
    image = torch.arange(32.0).repeat(32, 1).expand(1, 3, 32, 32).contiguous()  # value = column
    full_jitter = torch.tensor([[0.0, 0.0] + [1.0] * 8])
    plain = losses.random_perspective_crops(image, 32, 32, 0.0, full_jitter)
    warped = losses.random_perspective_crops(image, 32, 32, 0.5, full_jitter)
    # Every corner moved inwards by a quarter of the window: the crop shows the middle half of the columns.
    assert plain[0, 0, 16, 0] < 1 and plain[0, 0, 16, -1] > 30
    assert 7 <= warped[0, 0, 16, 0] <= 9 and 22 <= warped[0, 0, 16, -1] <= 24


def test_crop_gradient_flows_back_to_the_image():
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    crops = losses.random_perspective_crops(image, 16, 8, 0.5, draws(3, 0))
    crops.sum().backward()
    assert image.grad is not None and math.isfinite(image.grad.sum().item()) and image.grad.abs().sum() > 0


def draws(n: int, seed: int) -> torch.Tensor:
    """Crop draws for ``n`` crops from a seeded generator."""
    return losses.crop_uniforms(n, torch.Generator().manual_seed(seed))


@pytest.fixture
def clip():
    """A tiny guidance CLIP of this test's own, with an empty text cache."""
    return build_clip(TINY_CLIP_ARCH)


def test_text_embedding_is_the_normalised_mean_over_the_templates(clip):
    with torch.no_grad():
        each = [F.normalize(clip.model.encode_text(clip.tokenizer([t.format("ink")]))[0], dim=-1) for t in encoders.TEXT_TEMPLATES]
    embed = clip.encode_text("ink")
    assert torch.allclose(embed, F.normalize(torch.stack(each).mean(dim=0), dim=-1), atol=1e-6)
    assert not torch.allclose(embed, each[-1], atol=1e-3)  # the templates matter: not the bare prompt's embedding


def test_text_embeddings_are_cached_least_recently_used_first_out(clip, monkeypatch):
    first = clip.encode_text("ink")
    assert clip.encode_text("ink") is first
    monkeypatch.setattr(encoders, "TEXT_CACHE_SIZE", 3)
    for n in range(6):
        clip.encode_text("ink")  # in constant use, so never the least recently used
        clip.encode_text(f"style {n}")
        assert len(clip._text_cache) <= 3
    assert clip.encode_text("ink") is first
    assert list(clip._text_cache) == ["style 4", "style 5", "ink"]
