"""The kohya engine resumes: kill -9 sd-scripts (a stand-in train_network.py that honours
--resume the way sd-scripts does), re-run, and it continues from the newest state to the same
result as an uninterrupted run; a finished run is not launched again; old states are pruned."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

import tiny_sd
from animlora.config import load_settings
from animlora.errors import StageError
from animlora.training.inputs import load_dataset
from animlora.training.sd_scripts import kohya_states, launch, prepare_kohya, prune_states

STANDIN = Path(__file__).parent / "data" / "standin_train_network.py"


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "sd-scripts"
    (root / "venv" / "bin").mkdir(parents=True)
    shutil.copy(STANDIN, root / "train_network.py")
    accelerate = root / "venv" / "bin" / "accelerate"
    accelerate.write_text(f'#!/bin/sh\nshift 3\nexec "{sys.executable}" "$@"\n')  # drop: launch --num_cpu... 1
    accelerate.chmod(0o755)
    return root


def job(checkout, data, run, *, fresh=False, **train):
    settings = load_settings(overrides={"train": {"engine": "kohya", "sd_scripts": str(checkout), "epochs": 4,
                                                  "save_every_n_epochs": 1, "sample_every_n_epochs": 0, **train},
                                        "project": {"seed": 7}}).settings
    return prepare_kohya(settings.train, load_dataset(data), run, base_model="base", family="sd15", seed=7,
                         output_name="luca", fresh=fresh)


def launches(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "launches.txt").read_text().splitlines()]


def test_kill9_and_rerun_resumes_from_the_newest_state(checkout, tmp_path, monkeypatch):
    data = tiny_sd.write_dataset(tmp_path / "luca", n=2)  # 2 steps per epoch, 8 in all
    reference = tmp_path / "reference"
    assert launch(job(checkout, data, reference)) == 0
    expected = (reference / "luca.safetensors").read_text()

    run = tmp_path / "run"
    monkeypatch.setenv("STANDIN_KILL_AT", "5")  # in epoch 3, after the epoch-2 state (step 4)
    first = job(checkout, data, run)
    assert first.resume_from is None and not first.finished
    assert launch(first) == -9
    assert not (run / "luca.safetensors").exists()
    assert [s.step for s in kohya_states(run, "luca")] == [2, 4]
    monkeypatch.delenv("STANDIN_KILL_AT")

    second = job(checkout, data, run)
    assert (second.resume_from.folder.name, second.resume_from.step) == ("luca-000002-state", 4)
    config = tomllib.loads(second.config_toml.read_text())
    assert config["resume"] == str(run / "luca-000002-state") and config["skip_until_initial_step"] is True
    assert config["save_last_n_epochs_state"] == 2
    assert launch(second) == 0
    assert (run / "luca.safetensors").read_text() == expected  # continued at step 5, not at the epoch start
    assert sorted(p.name for p in run.glob("*-state")) == ["luca-000003-state", "luca-state"]  # keep_states = 2

    third = job(checkout, data, run)  # finished: nothing to launch
    assert third.finished and launch(third) == 0
    assert [entry["resume"] for entry in launches(run)] == [None, str(run / "luca-000002-state")]
    assert "resume" not in tomllib.loads(third.config_toml.read_text())

    with pytest.raises(StageError, match="other settings or data; pass --force"):
        job(checkout, data, run, network_dim=8)
    fresh = job(checkout, data, run, fresh=True, network_dim=8)
    assert fresh.resume_from is None and not fresh.finished and kohya_states(run, "luca") == []


def test_a_state_cut_short_is_not_resumed_and_is_pruned(tmp_path):
    run = tmp_path / "run"
    for name, step, complete in (("luca-000001-state", 2, True), ("luca-000002-state", 4, False)):
        folder = run / name
        folder.mkdir(parents=True)
        (folder / "train_state.json").write_text(json.dumps({"current_epoch": step // 2, "current_step": step}))
        if complete:
            (folder / "optimizer.bin").write_bytes(b"x")
            (folder / "random_states_0.pkl").write_bytes(b"x")
    assert [s.folder.name for s in kohya_states(run, "luca")] == ["luca-000001-state"]
    assert kohya_states(run, "luc") == []  # another output name's states are not ours
    assert prune_states(run, "luca", keep=1) == []  # the cut-short folder is newer: kept for sd-scripts to redo


@pytest.mark.parametrize("overrides", [
    {},
    {"optimizer": "prodigy", "unet_lr": 1.0, "text_encoder_lr": 1.0, "lr_scheduler": "constant", "lr_warmup_steps": 10,
     "train_text_encoder": False, "mixed_precision": "bf16", "save_precision": "fp32", "min_snr_gamma": 0},
])
def test_one_config_is_the_same_training_in_both_engines(checkout, tmp_path, overrides):
    from animlora.training.sd_scripts import kohya_recipe
    from animlora.training.trainer import LoraTrainer

    data = tiny_sd.write_dataset(tmp_path / "luca", n=3)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"negative": "blurry, 2d", "prompts": [
        {"name": "front", "prompt": "{trigger}, front view"},
        {"name": "side", "prompt": "{trigger}, side view", "negative": "lowres"}]}))
    train = {"sample_prompts": str(prompts), "sample_seeds": [1, 2], **overrides}
    settings = load_settings(config_files=[Path(__file__).parents[1] / "src/animlora/config/presets/3d-character-sd15.yaml"],
                             overrides={"train": {"engine": "kohya", "sd_scripts": str(checkout), **train},
                                        "project": {"seed": 7}}).settings
    dataset = load_dataset(data)
    prepare_kohya(settings.train, dataset, tmp_path / "run", base_model="base", family="sd15", seed=7,
                  output_name="luca")
    builtin = LoraTrainer(settings.train, settings.models, seed=7).recipe(dataset)
    kohya = kohya_recipe(tmp_path / "run")
    assert sorted(builtin) == sorted(kohya)
    assert [(k, builtin[k], kohya[k]) for k in builtin if builtin[k] != kohya[k]] == []
    assert len(builtin["samples"]) == 4 and {s["negative"] for s in builtin["samples"]} == {"blurry, 2d", "lowres"}
