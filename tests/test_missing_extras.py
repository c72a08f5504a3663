"""On the base install (no torch/diffusers) a real model path ends in one line naming the pip
extra, not in ModuleNotFoundError: training, evaluation and the model captioners."""

from __future__ import annotations

import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

from animlora.backends.registry import check_packages
from animlora.cli import app
from animlora.errors import MissingDependencyError

PIP_TRAIN = "pip install 'animlora[train]'"


def _dataset(folder):
    (folder / "images").mkdir(parents=True)
    (folder / "captions").mkdir()
    for i in range(2):
        Image.new("RGBA", (32, 32), (200, 50, 50, 255)).save(folder / "images" / f"{i}.png")
        (folder / "captions" / f"{i}.txt").write_text("luca, a boy")
    return folder


def _base_folder(folder):
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


@pytest.mark.parametrize("missing", ["diffusers", "torch"])
def test_train_without_the_train_extra_names_the_pip_line(tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    monkeypatch.chdir(tmp_path)  # the default output, runs/<dataset>, is under the current directory
    data = _dataset(tmp_path / "luca")
    base = _base_folder(tmp_path / "sd15")
    result = CliRunner().invoke(app, ["train", "--dataset", str(data), "--base-model", str(base)])
    assert result.exit_code == 1
    assert isinstance(result.exception, MissingDependencyError), repr(result.exception)
    assert str(result.exception) == (f"LoRA training (train.engine 'builtin') needs the Python package "
                                     f"'{missing}', which is not installed: {PIP_TRAIN}")
    assert not (tmp_path / "runs").exists()


def test_evaluate_without_the_train_extra_names_the_pip_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.chdir(tmp_path)  # the default output, evaluation/<run>, is under the current directory
    run = tmp_path / "runs" / "luca"
    run.mkdir(parents=True)
    (run / "luca.safetensors").write_bytes(b"\0" * 16)
    result = CliRunner().invoke(app, ["evaluate", str(run), "--base-model", str(_base_folder(tmp_path / "sd15"))])
    assert result.exit_code == 1
    assert isinstance(result.exception, MissingDependencyError), repr(result.exception)
    assert str(result.exception).endswith(f"'diffusers', which is not installed: {PIP_TRAIN}")
    assert not (tmp_path / "evaluation").exists()


def test_model_captioner_without_transformers_names_the_models_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError) as err:
        check_packages("captioning", "blip")
    assert str(err.value) == ("captioning backend 'blip' needs the Python package 'transformers', "
                              "which is not installed: pip install 'animlora[models]'")
