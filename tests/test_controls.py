"""The creative controls' invariants: a region mask, style from a picture, keeping the colours, blending styles."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stylizer.config import Limits, StyleConfig
from stylizer.errors import ConfigError, InputError
from stylizer.loading import load_models
from stylizer.request import check_request

from .helpers import BAD_MASKS, NO_GUIDANCE, make_image, pixels, run

PRESETS = ("tiny", "tiny-latent")
OUT = (64, 48)  # the 80x60 test picture at 64 px


@pytest.fixture(scope="module", params=PRESETS)
def models(request):
    return load_models(request.param, "cpu")


def left_half(width=80, height=60) -> Image.Image:
    """A mask selecting the left half of the picture."""
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, width // 2 - 1, height), fill=255)
    return mask


def resized(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.resize(OUT, Image.Resampling.LANCZOS), dtype=np.int16)


@pytest.mark.parametrize("start", ["invert", "noise"])
def test_outside_the_mask_the_result_is_the_input_and_inside_it_is_restyled(models, picture, start):
    frames = run(models, picture, mask=left_half(), start=start, mask_feather=2, preview_every=3)
    source = resized(picture)
    edge, band = OUT[0] // 2, 2 + 2  # the feather, and a pixel of resizing blur on each side
    for frame in frames:  # previews too, not only the result
        kept = np.abs(pixels(frame)[:, edge + band :] - source[:, edge + band :])
        assert kept.max() <= 1, f"step {frame.step}: the unmasked side changed by {kept.max()} levels"
    restyled = np.abs(pixels(frames[-1])[:, : edge - band] - source[:, : edge - band])
    assert restyled.mean() > 10


def test_an_inverted_mask_keeps_the_other_side(models, picture):
    result = pixels(run(models, picture, mask=left_half(), invert_mask=True, mask_feather=2)[-1])
    assert np.abs(result[:, : OUT[0] // 2 - 4] - resized(picture)[:, : OUT[0] // 2 - 4]).max() <= 1


def test_keep_colors_takes_the_inputs_chroma_and_the_results_luminance(models, picture):
    stylized = run(models, picture)[-1].image
    kept = run(models, picture, keep_colors=True)[-1].image
    ycc = lambda image: np.asarray(image.convert("YCbCr"), dtype=np.int16)  # noqa: E731
    source = ycc(picture.resize(OUT, Image.Resampling.LANCZOS))
    assert np.abs(ycc(kept)[..., 1:] - source[..., 1:]).max() <= 1
    # The stylized luminance, except where it cannot carry the input's chroma (noise from random weights often cannot).
    luminance = np.abs(ycc(kept)[..., 0] - ycc(stylized)[..., 0])
    assert (luminance <= 1).mean() > 0.75 and luminance.mean() < np.abs(ycc(kept)[..., 0] - source[..., 0]).mean() / 4


def test_a_blend_weighted_one_and_zero_is_the_first_prompt_exactly(models, picture):
    single = run(models, picture, prompt="drawing with black ink")
    blend = run(models, picture, prompt="drawing with black ink", prompt_2="neon light", weight_1=1.0, weight_2=0.0)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(single, blend, strict=True))
    halves = run(models, picture, prompt="drawing with black ink", prompt_2="neon light", weight_1=0.5, weight_2=0.5)
    assert np.abs(pixels(halves[-1]) - pixels(single[-1])).max() > 2


@pytest.mark.parametrize(
    "weights, fragment",
    [({"weight_2": -1.0}, "weight_2 must be between 0"), ({"weight_1": 0.0, "weight_2": 0.0}, "the style weights are all 0")],
)
def test_negative_or_all_zero_weights_are_refused(weights, fragment):
    with pytest.raises(ConfigError, match=fragment):
        StyleConfig(prompt="ink", prompt_2="fire", **weights).validated()


def test_a_style_picture_equal_to_the_input_points_nowhere_and_changes_nothing(models, picture):
    directional = {**NO_GUIDANCE, "w_dir": 20000.0, "w_patch": 20000.0}
    same = run(models, picture, style_image=picture, prompt="", **directional)
    unguided = run(models, picture, prompt="", style_image=picture, **NO_GUIDANCE)
    assert all(np.isfinite(np.asarray(f.image, dtype=float)).all() for f in same)
    assert np.array_equal(pixels(same[-1]), pixels(unguided[-1]))


def test_guidance_towards_a_style_picture_lowers_its_directional_loss(models, picture):
    style = make_image(seed=5).rotate(180).convert("L").convert("RGB")
    unguided = run(models, picture, prompt="", style_image=style, **NO_GUIDANCE)[-1].losses["dir"]
    guided = run(models, picture, prompt="", style_image=style, **{**NO_GUIDANCE, "w_dir": 20000.0})[-1].losses["dir"]
    assert guided < unguided - 0.05


def test_the_prompt_is_optional_only_with_a_style_picture(picture):
    with pytest.raises(ConfigError, match="prompt is empty"):
        check_request(picture, {"prompt": ""}, Limits())
    assert check_request(picture, {"prompt": ""}, Limits(), style_image=make_image(seed=2)).config.prompt == ""


@pytest.mark.parametrize("kind", list(BAD_MASKS))
def test_bad_masks_get_a_clear_message(picture, kind):
    mask, fragment = BAD_MASKS[kind]
    with pytest.raises(InputError, match=fragment):
        check_request(picture, {"prompt": "ink"}, Limits(), mask=mask)


def test_a_white_mask_inverted_selects_nothing(picture):
    with pytest.raises(InputError, match="selects nothing: paint the region to restyle outside it"):
        check_request(picture, {"prompt": "ink", "invert_mask": True}, Limits(), mask=Image.new("L", (80, 60), 255))


def test_a_painted_layer_with_transparency_is_read_by_its_alpha(picture):
    layer = Image.new("RGBA", (80, 60), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((10, 10, 30, 30), fill=(255, 255, 255, 255))
    mask = check_request(picture, {"prompt": "ink"}, Limits(), mask=layer).mask
    assert mask.getpixel((20, 20)) == 255 and mask.getpixel((60, 50)) == 0


def test_outside_the_mask_every_step_follows_the_inputs_own_trajectory(monkeypatch, picture):
    """Blended diffusion, not just a final paste: on a pixel model the last sample already is the input outside the mask."""
    from stylizer.engine.tensors import to_tensor

    models = load_models("tiny", "cpu")
    decoded = []
    original = models.backend.decode
    monkeypatch.setattr(
        models.backend,
        "decode",
        lambda sample, *args, **kwargs: decoded.append(sample.detach().clone()) or original(sample, *args, **kwargs),
    )
    run(models, picture, mask=left_half(), mask_feather=2, preview_every=100)
    source = to_tensor(picture, tuple(decoded[-1].shape[-1:-3:-1]))
    edge, band = decoded[-1].shape[-1] // 2, 4
    assert decoded[-1][..., edge + band :].equal(source[..., edge + band :])
    assert not decoded[-1][..., : edge - band].equal(source[..., : edge - band])


def test_patch_crops_are_centred_where_the_mask_is_on():
    import torch

    from stylizer.engine.losses import crop_cdf, crop_uniforms, random_perspective_crops

    image = torch.zeros(1, 3, 48, 64)
    image[..., 32:] = 1.0  # the right half is white
    where = torch.zeros(48, 64)
    where[:, :16] = 1.0  # crops only in the left quarter
    draws = crop_uniforms(32, torch.Generator().manual_seed(0))
    crops = random_perspective_crops(image, 8, 16, 0.0, draws, crop_cdf(where))
    assert crops.max() == 0
    anywhere = random_perspective_crops(image, 8, 16, 0.0, draws)
    assert anywhere.max() > 0


def test_the_losses_see_only_the_masked_region(picture):
    import torch

    from stylizer.engine.mask import as_tensor
    from stylizer.engine.objective import StyleObjective
    from stylizer.engine.tensors import to_tensor
    from stylizer.images import check_mask

    models = load_models("tiny", "cpu")
    source = (to_tensor(picture, OUT) + 1) / 2
    region = as_tensor(check_mask(left_half(), picture, invert=False), OUT, torch.device("cpu"))
    config = StyleConfig(prompt="ink", n_patches=4, patch_size=16).validated()
    changed = source.clone()
    changed[..., OUT[0] // 2 + 2 :] = torch.rand_like(changed[..., OUT[0] // 2 + 2 :])  # only outside the mask (and its soft edge)

    def terms(image, mask):
        objective = StyleObjective(models.clip, models.vgg, source, config, region=mask)
        return objective.terms(image)

    assert terms(changed, region) == terms(source, region)
    assert terms(changed, None) != terms(source, None)
