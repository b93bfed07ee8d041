"""StyleConfig validation and Limits from the environment."""

import math

import pytest

from stylizer.config import Limits, StyleConfig
from stylizer.errors import ConfigError


def test_defaults_validate_and_round_trip_through_json():
    config = StyleConfig(prompt="watercolor").validated()
    assert config.reference == "a photo"
    assert StyleConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": " \t\n "}, "prompt is empty"),
        ({"prompt": "x" * 20_001}, "limit is 20,000"),
        ({"reference": ""}, "reference is empty"),
        ({"steps": 0}, "steps must be between 1 and"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"strength": 0.0}, "strength must be between"),
        ({"strength": math.nan}, "strength must be a finite number"),
        ({"w_dir": math.inf}, "w_dir must be a finite number"),
        ({"w_content": -1.0}, "w_content must be between 0"),
        ({"threshold": 3.0}, "threshold must be between 0 and 2"),
        ({"mode": "slow"}, "mode must be one of full, fast"),
        ({"start": "x"}, "start must be one of noise, invert"),
        ({"seed": -1}, "seed must be between 0"),
        ({"size": "big"}, "size must be a number"),
        ({"w_tv": True}, "w_tv must be a number"),
    ],
)
def test_bad_values_raise_clear_errors(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        StyleConfig(**{"prompt": "oil painting", **changes}).validated()


def test_a_pasted_essay_of_a_prompt_is_accepted():
    essay = "a watercolour of a quiet harbour at dawn, soft light on the water, " * 45
    assert len(essay) > 3000
    assert StyleConfig(prompt=essay).validated().prompt == essay.strip()


def test_control_characters_and_runs_of_space_are_cleaned():
    config = StyleConfig(prompt="oil\x00 painting\x1b  of\nflowers").validated()
    assert config.prompt == "oil painting of flowers"


def test_limits_cap_the_ranges_and_come_from_the_environment():
    limits = Limits.from_env(
        {
            "STYLIZER_MAX_STEPS": "20",
            "STYLIZER_MAX_SIZE": "128",
            "STYLIZER_OUTPUT_TTL": "60",
            "STYLIZER_MAX_UPLOAD_MB": "5",
            "STYLIZER_JOB_TIMEOUT": "30",
            "STYLIZER_MAX_PIXELS": "1e6",
        }
    )
    assert (limits.max_steps, limits.max_size, limits.output_ttl_s) == (20, 128, 60.0)
    assert (limits.max_upload_mb, limits.job_timeout_s, limits.max_pixels) == (5.0, 30.0, 1_000_000)
    with pytest.raises(ConfigError, match="steps must be between 1 and 20"):
        StyleConfig(prompt="ink", steps=21).validated(limits)
    with pytest.raises(ConfigError, match="size must be between 32 and 128"):
        StyleConfig(prompt="ink", steps=10, size=256).validated(limits)
    with pytest.raises(ConfigError, match="STYLIZER_MAX_STEPS"):
        Limits.from_env({"STYLIZER_MAX_STEPS": "lots"})


def test_unknown_settings_and_bad_json_are_rejected():
    with pytest.raises(ConfigError, match="unknown setting"):
        StyleConfig.from_dict({"prompt": "ink", "colour": 3})
    with pytest.raises(ConfigError, match="not valid JSON"):
        StyleConfig.from_json("{prompt:")


def test_denoise_steps_follow_strength():
    assert StyleConfig(prompt="ink", steps=50, strength=0.6).denoise_steps == 30
    assert StyleConfig(prompt="ink", steps=3, strength=0.01).denoise_steps == 1
