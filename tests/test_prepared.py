"""The prepared-picture cache: what each value is keyed on, unchanged results, the LRU bound."""

import dataclasses
import gc
import weakref

import numpy as np
import pytest
import torch

from stylizer.config import INVERSION, PICTURE, PREVIEW, StyleConfig, knobs, prepared_by
from stylizer.engine.optimization import Optimizations
from stylizer.engine.prepared import PreparedCache, prepare_picture
from stylizer.engine.sampler import stylize
from stylizer.loading import load_models
from stylizer.request import Request
from stylizer.serving.deployment import Deployment
from stylizer.serving.jobs import ModelInfo
from stylizer.ui import build_demo

from .helpers import CUDA_REPEAT_TOLERANCE, FakeJobs, make_image, pixels

INFO = ModelInfo("tiny-latent", "latent", "tiny-clip", ["cpu"], True, {"size": 64}, "test models")
BASE = StyleConfig(prompt="drawing with black ink", size=64, steps=10, strength=0.6, start="invert").validated()
# What a job with one setting changed finds in a cache prepared for BASE:
HIT = "the prepared picture and its inversion"
NEW_INVERSION = "the prepared picture, and it inverts again"
NEW_PICTURE = "nothing: it prepares the picture again"
NO_INVERSION = "the prepared picture, and needs no inversion"
# Every StyleConfig field, with a changed value and what that job finds (tiny-latent: its UNet reads text).
KEY_TABLE = {
    "prompt": ("oil painting", HIT),
    "reference": ("a sketch", NEW_INVERSION),
    "w_dir": (1.0, HIT),
    "w_patch": (1.0, HIT),
    "w_content": (1.0, HIT),
    "w_tv": (1.0, HIT),
    "steps": (20, NEW_INVERSION),
    "strength": (0.9, NEW_INVERSION),
    "start": ("noise", NO_INVERSION),
    "mode": ("full", HIT),
    "guidance_scale": (2.0, HIT),
    "cfg_scale": (3.0, HIT),
    "n_patches": (4, HIT),
    "patch_size": (32, HIT),
    "threshold": (0.1, HIT),
    "size": (48, NEW_PICTURE),
    "seed": (7, HIT),
    "max_shift": (0.5, HIT),
    "distortion": (0.1, HIT),
    "preview_every": (2, HIT),
    "preview_size": (32, HIT),
    "preview_steps": (4, HIT),
    "prompt_2": ("neon light", HIT),
    "prompt_3": ("mosaic", HIT),
    "prompt_4": ("pencil sketch", HIT),
    "weight_1": (0.5, HIT),
    "weight_2": (0.5, HIT),
    "weight_3": (0.5, HIT),
    "weight_4": (0.5, HIT),
    "style_image_weight": (0.9, HIT),
    "keep_colors": (True, HIT),
    "invert_mask": (True, HIT),
    "mask_feather": (9, HIT),
    "guide_start": (0.2, HIT),
    "guide_end": (0.8, HIT),
    "guide_decoder": ("taesd", HIT),
}
OUTCOMES = {  # stats a job adds: picture hit, picture miss, inversion hit, inversion miss
    HIT: (1, 0, 1, 0),
    NEW_INVERSION: (1, 0, 0, 1),
    NEW_PICTURE: (0, 1, 0, 1),
    NO_INVERSION: (1, 0, 0, 0),
}


@pytest.fixture(scope="module")
def latent_models():
    return load_models("tiny-latent", "cpu")


def lookups(cache: PreparedCache) -> tuple[int, ...]:
    return tuple(cache.stats[k] for k in ("picture_hit", "picture_miss", "inversion_hit", "inversion_miss"))


def test_every_setting_is_classified_by_what_it_invalidates(latent_models, picture):
    """A new StyleConfig field fails here until it is classified (and its class is checked)."""
    assert set(KEY_TABLE) == {f.name for f in dataclasses.fields(StyleConfig)}
    for name, (value, outcome) in KEY_TABLE.items():
        cache = PreparedCache()
        prepare_picture(latent_models, picture, BASE, cache=cache)
        assert lookups(cache) == (0, 1, 0, 1)
        before = lookups(cache)
        prepared = prepare_picture(latent_models, picture, dataclasses.replace(BASE, **{name: value}).validated(), cache=cache)
        added = tuple(after - b for after, b in zip(lookups(cache), before, strict=True))
        assert added == OUTCOMES[outcome], f"{name}={value!r}: expected {outcome}, the cache saw {added}"
        assert prepared.reused == (outcome in (HIT, NO_INVERSION)), name


def test_the_knob_table_says_what_each_setting_invalidates(latent_models, picture):
    """Each knob's ``prepares`` flag is what the cache's keys are made of, and what the job finds says the same."""
    kinds = {HIT: {None, PREVIEW}, NEW_PICTURE: {PICTURE}, NEW_INVERSION: {INVERSION}, NO_INVERSION: {INVERSION}}
    for name, (_, outcome) in KEY_TABLE.items():
        assert knobs()[name].prepares in kinds[outcome], f"{name} is flagged {knobs()[name].prepares!r} but a job finds {outcome}"
    assert set(prepared_by()) == {name for name, knob in knobs().items() if knob.prepares}


@pytest.mark.parametrize("name", prepared_by(PREVIEW))
def test_the_preview_settings_are_what_the_live_previews_preparation_depends_on(latent_models, picture, name):
    cache = PreparedCache()
    prepare_picture(latent_models, picture, BASE.as_preview(), cache=cache)
    before = lookups(cache)
    changed = dataclasses.replace(BASE, **{name: KEY_TABLE[name][0]}).validated()
    assert not prepare_picture(latent_models, picture, changed.as_preview(), cache=cache).reused
    assert lookups(cache) != tuple(b + a for b, a in zip(before, OUTCOMES[HIT], strict=True))


def test_what_no_knob_flags_really_leaves_the_prepared_picture_unchanged(latent_models, picture):
    """Prepared from scratch, with any unflagged setting changed, the picture's encoding, features and inversion are the same tensors."""
    cold = prepare_picture(latent_models, picture, BASE)
    for name, (value, _) in KEY_TABLE.items():
        if knobs()[name].prepares is not None:
            continue
        other = prepare_picture(latent_models, picture, dataclasses.replace(BASE, **{name: value}).validated())
        assert torch.equal(other.clean, cold.clean) and torch.equal(other.features.embed, cold.features.embed), name
        assert all(torch.equal(a, b) for a, b in zip(other.features.vgg, cold.features.vgg, strict=True)), name
        assert torch.equal(other.start, cold.start), name


def test_the_page_prepares_the_picture_again_when_a_flagged_setting_changes_and_only_then():
    demo = build_demo(FakeJobs(lambda image, settings: iter(()), INFO), previews=True, preparation=True)
    components = {c["id"]: c.get("props", {}) for c in demo.config["components"]}
    line = next(i for i, props in components.items() if props.get("elem_id") == "prepared")
    dependencies = {dep["id"]: dep for dep in demo.config["dependencies"]}
    triggers = {
        components[target]["label"]
        for dep in dependencies.values()
        if dep["outputs"] == [line] and dep["trigger_after"] is not None
        for target, _ in dependencies[dep["trigger_after"]]["targets"]
    }
    assert triggers == {"Input image", "Live preview", *(knobs()[name].label for name in prepared_by())}


def test_another_picture_or_numerics_is_another_entry(latent_models, picture):
    cache = PreparedCache()
    prepare_picture(latent_models, picture, BASE, cache=cache)
    prepare_picture(latent_models, make_image(seed=1), BASE, cache=cache)  # the same size, other pixels
    prepare_picture(latent_models, picture, BASE, optimize=Optimizations(channels_last=True), cache=cache)
    assert lookups(cache) == (0, 3, 0, 3) and len(cache) == 3


def test_a_pixel_model_inverts_without_text_so_the_reference_does_not_matter(tiny_models, picture):
    cache = PreparedCache()
    prepare_picture(tiny_models, picture, BASE, cache=cache)
    assert prepare_picture(tiny_models, picture, dataclasses.replace(BASE, reference="a sketch"), cache=cache).reused


@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
@pytest.mark.parametrize("start", ["invert", "noise"])
def test_a_job_from_the_cache_is_pixel_identical_to_a_cold_one(preset, start, picture):
    models = load_models(preset, "cpu")
    config = dataclasses.replace(BASE, start=start, preview_every=2)
    cold = list(stylize(models, Request(picture, config)))
    cache = PreparedCache()
    list(stylize(models, Request(picture, dataclasses.replace(config, w_content=900.0, seed=5)), cache=cache))  # prepares the picture
    reused = []
    warm = list(stylize(models, Request(picture, config), cache=cache, on_prepared=reused.append))
    assert reused == [True]
    assert [f.step for f in warm] == [f.step for f in cold]
    for a, b in zip(cold, warm, strict=True):
        assert np.array_equal(pixels(a), pixels(b)) and a.losses == b.losses


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
def test_on_cuda_a_job_from_the_cache_agrees_with_a_cold_one_within_the_repeat_tolerance(preset, picture):
    models = load_models(preset, "cuda")
    cold = pixels(list(stylize(models, Request(picture, BASE)))[-1])
    cache = PreparedCache()
    list(stylize(models, Request(picture, dataclasses.replace(BASE, w_content=900.0)), cache=cache))
    warm = pixels(list(stylize(models, Request(picture, BASE), cache=cache))[-1])
    difference = np.abs(cold - warm)
    assert difference.max() <= CUDA_REPEAT_TOLERANCE["max"] and difference.mean() <= CUDA_REPEAT_TOLERANCE["mean"]


def test_the_cache_keeps_the_most_recent_pictures_and_frees_the_rest(tiny_models):
    cache = PreparedCache(max_entries=2)
    pictures = [make_image(seed=s) for s in range(3)]
    first = prepare_picture(tiny_models, pictures[0], BASE, cache=cache)
    evicted = weakref.ref(first.start)
    del first
    prepare_picture(tiny_models, pictures[1], BASE, cache=cache)
    prepare_picture(tiny_models, pictures[0], BASE, cache=cache)  # used again: now the most recent
    prepare_picture(tiny_models, pictures[2], BASE, cache=cache)  # evicts pictures[1]
    assert len(cache) == 2
    assert prepare_picture(tiny_models, pictures[0], BASE, cache=cache).reused
    assert not prepare_picture(tiny_models, pictures[1], BASE, cache=cache).reused
    gc.collect()
    assert evicted() is not None  # pictures[0] survived
    prepare_picture(tiny_models, pictures[2], BASE, cache=cache)
    prepare_picture(tiny_models, pictures[1], BASE, cache=cache)  # evicts pictures[0]
    gc.collect()
    assert evicted() is None, "an evicted entry's tensors must be freed"


def test_storage_on_the_cpu_hands_tensors_to_the_jobs_device(tiny_models, picture):
    cache = PreparedCache(storage="cpu")
    prepare_picture(tiny_models, picture, BASE, cache=cache)
    entry = next(iter(cache._entries.values()))
    assert entry.clean.device.type == "cpu" and all(x.device.type == "cpu" for i in entry.inversions.values() for x in i.trajectory)
    assert prepare_picture(tiny_models, picture, BASE, cache=cache).start.device == tiny_models.device


def test_the_entry_count_comes_from_the_environment():
    assert Deployment.from_env(environ={"STYLIZER_CACHE_ENTRIES": "3"}).cache_entries == 3
    assert Deployment.from_env(environ={}).cache_entries is None and PreparedCache().max_entries == 8  # the engine's default
    with pytest.raises(ValueError, match="STYLIZER_CACHE_ENTRIES"):
        Deployment.from_env(environ={"STYLIZER_CACHE_ENTRIES": "many"})
    with pytest.raises(ValueError, match="at least 1"):
        PreparedCache(0)


def test_a_cancelled_inversion_leaves_no_start_behind(tiny_models, picture):
    class Abort(Exception):
        pass

    def abort(done, total):
        if done == 2:
            raise Abort()

    cache = PreparedCache()
    with pytest.raises(Abort):
        prepare_picture(tiny_models, picture, BASE, cache=cache, on_invert=abort)
    prepared = prepare_picture(tiny_models, picture, BASE, cache=cache)
    assert not prepared.reused and torch.isfinite(prepared.start).all()
