"""train/evaluate inside `animlora run`: skipped with the exact train command when no base model
is configured; with one, the run trains every dataset in training_data/."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import tiny_sd  # noqa: E402
from animlora.cli.project import create_project, run_project  # noqa: E402
from animlora.workspace import Workspace  # noqa: E402


def test_run_skips_training_without_base_model_and_prints_the_command(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the user runs from the folder above the project (as `demo` leaves them)
    root = create_project(tmp_path / "proj", "proj", [], "3d")
    tiny_sd.write_dataset(root / "training_data" / "luca", n=2)
    workspace = Workspace(root)
    with caplog.at_level(logging.WARNING, logger="animlora"):
        summaries = run_project(workspace, None, "train", "evaluate", False, False)
    assert [(s.stage, s.items_total, s.failures) for s in summaries] == [("train", 0, ()), ("evaluate", 0, ())]
    assert "animlora train --dataset proj/training_data/luca --base-model BASE_MODEL" in caplog.text
    manifest = json.loads(workspace.manifest_path("train").read_text())
    assert manifest["report"]["train_commands"] == [
        "animlora train --dataset proj/training_data/luca --base-model BASE_MODEL"]
    # a project that names a preset gets it in the command (no preset is hard-coded)
    (root / "project.yaml").write_text((root / "project.yaml").read_text() + "train:\n  preset: 3d-character-sdxl\n")
    run_project(Workspace(root), None, "train", "train", False, False)
    manifest = json.loads(workspace.manifest_path("train").read_text())
    assert manifest["report"]["train_commands"] == [
        "animlora train --dataset proj/training_data/luca --base-model BASE_MODEL --preset 3d-character-sdxl"]


def test_printed_train_command_works_from_a_directory_outside_the_project(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = create_project(tmp_path / "proj", "proj", [], "3d")
    tiny_sd.write_dataset(root / "training_data" / "luca", n=2)
    monkeypatch.chdir(elsewhere)
    run_project(Workspace(root), None, "train", "train", False, False)
    (command,) = json.loads(Workspace(root).manifest_path("train").read_text())["report"]["train_commands"]
    args = shlex.split(command)
    dataset = Path(args[args.index("--dataset") + 1])
    assert dataset.is_absolute() and (dataset / "images").is_dir()
    assert dataset == (root / "training_data" / "luca").resolve()


def test_run_trains_each_dataset_when_a_base_model_is_set(tmp_path):
    base = tiny_sd.build_sd15(tmp_path / "sd15")
    root = create_project(tmp_path / "proj", "proj", [], "3d")
    tiny_sd.write_dataset(root / "training_data" / "luca", n=2)
    project_yaml = root / "project.yaml"
    data = yaml.safe_load(project_yaml.read_text())
    data["train"] = {"base_model": str(base), "resolution": 16, "min_bucket": 8, "max_bucket": 32, "bucket_step": 8,
                     "network_dim": 4, "network_alpha": 2, "epochs": 1, "sample_every_n_epochs": 0,
                     "tensorboard": False, "gradient_checkpointing": False}
    data["evaluate"] = {"clip_model": str(tiny_sd.build_clip(tmp_path / "clip")), "steps": 2, "seeds": [1, 2],
                        "width": 32, "height": 32}
    project_yaml.write_text(yaml.safe_dump(data))
    summaries = run_project(Workspace(root), None, "train", "evaluate", False, False)
    assert [(s.stage, s.items_total, s.items_done, s.failures) for s in summaries] == [
        ("train", 1, 1, ()), ("evaluate", 1, 1, ())]
    assert (root / "runs" / "luca" / "luca.safetensors").is_file()
    report = json.loads((root / "evaluation" / "luca" / "quality_evaluation.json").read_text())
    assert report["best"]["label"] == "checkpoint_1" and report["reference_images"] == 2
    assert (root / "evaluation" / "luca" / "checkpoint_1" / "portrait_s2.png").is_file()
    again = run_project(Workspace(root), None, "train", "evaluate", False, False)
    assert [s.up_to_date for s in again] == [True, True]


def fake_sd_scripts(folder):
    """An sd-scripts checkout whose accelerate records its argv and working folder."""
    (folder / "venv" / "bin").mkdir(parents=True)
    (folder / "train_network.py").write_text("# fake\n")
    record = folder / "argv.txt"
    fake = folder / "venv" / "bin" / "accelerate"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$PWD\" \"$@\" >> {record}\n")
    fake.chmod(0o755)
    return folder, record


def test_run_honours_the_kohya_engine(tmp_path):
    base = tiny_sd.build_sd15(tmp_path / "sd15")
    checkout, record = fake_sd_scripts(tmp_path / "sd-scripts")
    root = create_project(tmp_path / "proj", "proj", [], "3d")
    tiny_sd.write_dataset(root / "training_data" / "luca", n=2)
    project_yaml = root / "project.yaml"
    data = yaml.safe_load(project_yaml.read_text())
    data["train"] = {"base_model": str(base), "engine": "kohya", "sd_scripts": str(checkout), "epochs": 99,
                     "preset": "3d-character-sd15"}
    project_yaml.write_text(yaml.safe_dump(data))
    (summary,) = run_project(Workspace(root), None, "train", "train", False, False)
    assert (summary.items_total, summary.items_done, summary.failures) == (1, 1, ())
    run = root / "runs" / "luca"
    argv = record.read_text().splitlines()
    assert argv[-2:] == ["--config_file", str(run / "training_config.toml")]
    import tomllib

    config = tomllib.loads((run / "training_config.toml").read_text())
    assert config["max_train_epochs"] == 99  # project.yaml wins over the preset
    manifest = json.loads(Workspace(root).manifest_path("train").read_text())
    assert manifest["report"]["engine"] == "kohya"
    assert manifest["report"]["results"]["luca"]["command"][-1] == str(run / "training_config.toml")
    again = run_project(Workspace(root), None, "train", "train", False, False)
    assert again[0].up_to_date and len(record.read_text().splitlines()) == len(argv)
