"""`animlora train` up to the plan (no model loaded): presets as a settings layer, the plan,
and one-line errors for a wrong family or a missing base model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

import tiny_sd  # noqa: E402
from animlora.cli import app  # noqa: E402
from animlora.cli.train import load_train_settings  # noqa: E402
from animlora.errors import BadInputError, ConfigError  # noqa: E402


def test_presets_are_a_settings_layer_under_the_users_overrides():
    sd15 = load_train_settings("3d-character-sd15", None, None, None, {})
    t = sd15.settings.train
    assert (t.network_dim, t.network_alpha, t.unet_lr, t.text_encoder_lr) == (32, 16.0, 1e-4, 5e-5)
    assert (t.lr_scheduler, t.epochs, t.save_every_n_epochs) == ("cosine_with_restarts", 15, 3)
    assert (t.resolution, t.min_bucket, t.max_bucket, t.flip_aug, t.color_aug) == (512, 384, 768, False, False)
    assert sd15.source_of("train.network_dim").endswith("3d-character-sd15.yaml")
    sdxl = load_train_settings("3d-character-sdxl", None, None, ["train.epochs=4"], {"train.network_dim": 8})
    t = sdxl.settings.train
    assert (t.family, t.resolution, t.unet_lr, t.text_encoder_lr, t.epochs, t.network_dim) == (
        "sdxl", 1024, 1e-4, 1e-5, 4, 8)
    with pytest.raises(ConfigError, match="unknown preset 'nope'; presets: 3d-character-flux, 3d-character-sd15, 3d-character-sdxl"):
        load_train_settings("nope", None, None, None, {})


def test_dry_run_prints_the_plan_and_errors_are_one_line(tmp_path):
    base = tiny_sd.build_sd15(tmp_path / "sd15")
    data = tiny_sd.write_dataset(tmp_path / "luca", n=3)
    args = ["train", "--dataset", str(data), "--base-model", str(base), "--preset", "3d-character-sd15",
            "--set", "train.resolution=32", "--set", "train.min_bucket=32", "--set", "train.max_bucket=32",
            "--dry-run", "--json"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout[result.stdout.index("{"):])["plan"]
    assert (plan["images"], plan["steps_per_epoch"], plan["total_steps"], plan["family"]) == (3, 3, 45, "sd15")
    assert not (tmp_path / "runs").exists()

    wrong = CliRunner().invoke(app, [*args[:6], "3d-character-sdxl", "--dry-run"])
    assert isinstance(wrong.exception, ConfigError)
    assert "Stable Diffusion 1.x weights but the settings ask for SDXL" in str(wrong.exception)
    missing = CliRunner().invoke(app, ["train", "--dataset", str(data), "--base-model", str(tmp_path / "x.safetensors"),
                                       "--dry-run"])
    assert isinstance(missing.exception, BadInputError) and "does not exist" in str(missing.exception)


def test_help_lists_every_preset_and_kohya_refuses_flux_in_one_line(tmp_path):
    import re

    from animlora.config import preset_names

    text = re.sub(r"[\s│]+", " ", CliRunner().invoke(app, ["train", "--help"], terminal_width=200).stdout)
    assert f"Settings preset: {' | '.join(preset_names())}." in text and "3d-character-flux" in text
    data = tiny_sd.write_dataset(tmp_path / "luca", n=1)
    result = CliRunner().invoke(app, ["train", "--dataset", str(data), "--base-model", "black-forest-labs/FLUX.1-dev",
                                      "--preset", "3d-character-flux", "--engine", "kohya", "--dry-run"])
    assert isinstance(result.exception, ConfigError)  # printed as one line by the app's error handler
    assert str(result.exception).startswith("train.engine = kohya does not train Flux.1")
    assert "--engine builtin" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "runs").exists()
