"""Training settings as a user writes them: YAML's booleans for choice words, save precision."""

from __future__ import annotations

import pytest

from animlora.config import load_settings
from animlora.config.loader import parse_set_options, read_yaml
from animlora.errors import ConfigError


def test_unquoted_no_is_the_choice_no(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("train:\n  mixed_precision: no\n")
    assert read_yaml(config)["train"]["mixed_precision"] is False  # what YAML 1.1 makes of it
    settings = load_settings(config_files=[config]).settings
    assert settings.train.mixed_precision == "no"
    for spelling in ("no", "No", "NO", "off", "false", "'no'"):
        over = parse_set_options([f"train.mixed_precision={spelling}"])
        assert load_settings(overrides=over).settings.train.mixed_precision == "no", spelling


def test_a_boolean_that_is_no_choice_is_still_refused():
    with pytest.raises(ConfigError, match=r"train.mixed_precision = True is not valid: allowed: no, fp16, bf16"):
        load_settings(overrides=parse_set_options(["train.mixed_precision=yes"]))
    # real boolean settings keep their booleans
    assert load_settings(overrides=parse_set_options(["train.flip_aug=no"])).settings.train.flip_aug is False
