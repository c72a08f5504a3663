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


def test_empty_float32_cast_warning_is_silenced_and_a_real_one_kept(capfd):
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL
    from diffusers.utils import logging as dlogging

    from animlora.training.trainer import quiet_library_noise

    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, layers_per_block=1)
    vae.to("cpu", dtype=torch.float32)
    assert "should be kept in float32: []" in capfd.readouterr().err  # the noise, before
    quiet_library_noise()
    vae.to("cpu", dtype=torch.float32)
    dlogging.get_logger("diffusers.models.modeling_utils").warning("modules that should be kept in float32: ['norm']")
    err = capfd.readouterr().err
    assert "float32: []" not in err and "float32: ['norm']" in err
