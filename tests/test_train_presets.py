"""A training preset is a settings layer between the profile and project.yaml:
defaults → profile → preset → project.yaml → --config → character → --set."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from animlora.config import load_settings
from animlora.errors import ConfigError


def _project(tmp_path: Path, train: dict) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "project.yaml").write_text(yaml.safe_dump({"project": {"name": "p"}, "train": train}))
    return root


def test_the_projects_values_survive_a_preset_given_on_the_command_line(tmp_path):
    root = _project(tmp_path, {"epochs": 99})
    loaded = load_settings(root, preset="3d-character-sdxl")
    t = loaded.settings.train
    assert t.epochs == 99 and loaded.source_of("train.epochs") == str(root / "project.yaml")
    # what the project does not set comes from the preset, over the package defaults
    assert (t.family, t.resolution, t.text_encoder_lr, t.preset) == ("sdxl", 1024, 1e-5, "3d-character-sdxl")
    assert loaded.source_of("train.resolution").endswith("3d-character-sdxl.yaml")
    # --set wins over both
    over = load_settings(root, preset="3d-character-sdxl", overrides={"train": {"epochs": 7}})
    assert over.settings.train.epochs == 7


def test_a_preset_named_in_project_yaml_is_the_same_layer(tmp_path):
    root = _project(tmp_path, {"preset": "3d-character-sdxl", "epochs": 99, "resolution": 768})
    t = load_settings(root).settings.train
    assert (t.epochs, t.resolution, t.family, t.max_bucket) == (99, 768, "sdxl", 1536)
    # the command line's --preset replaces the project's choice, still under project.yaml
    t = load_settings(root, preset="3d-character-sd15").settings.train
    assert (t.epochs, t.resolution, t.family, t.preset) == (99, 768, "sd15", "3d-character-sd15")


def test_no_preset_changes_nothing_and_an_unknown_one_lists_the_presets(tmp_path):
    plain = load_settings().settings.train
    assert plain.preset == "" and plain.epochs == 15
    with pytest.raises(ConfigError, match="unknown preset 'nope'; presets: 3d-character-flux, 3d-character-sd15, 3d-character-sdxl"):
        load_settings(preset="nope")
    root = _project(tmp_path, {"preset": "nope"})
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_settings(root)


def test_a_field_added_later_leaves_the_settings_hash_alone_until_it_is_set():
    plain = load_settings().settings
    named = load_settings(overrides={"train": {"preset": "3d-character-sd15"}}).settings
    assert plain.train.fingerprint() != named.train.fingerprint()
    dumped = plain.train.model_dump(mode="json")
    for name in type(plain.train).added_fields:  # fields added later (preset, num_processes, Flux's five)
        dumped.pop(name)
    dumped = {{"min_bucket": "bucket_min", "max_bucket": "bucket_max"}.get(k, k): v for k, v in dumped.items()}  # its names
    import hashlib
    import json

    old = hashlib.sha256(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert plain.train.fingerprint() == old  # the hash a release without the field computed
