"""Evaluation on a tiny pipeline: images per checkpoint, finite metrics, the grid, the pick;
and the kohya engine's files and command line with a fake sd-scripts checkout."""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import tiny_sd  # noqa: E402
from animlora.cli import app  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from animlora.errors import BadInputError  # noqa: E402
from animlora.training.evaluation import evaluate_checkpoints, evaluate_run, file_checkpoints  # noqa: E402
from animlora.training.kohya_format import kohya_metadata, kohya_state_dict, save_kohya  # noqa: E402
from animlora.training.network import UNET_TARGETS, add_lora  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny base model, a tiny CLIP, a dataset and a run folder with two checkpoints."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("eval")
    base = tiny_sd.build_sd15(root / "sd15")
    clip = tiny_sd.build_clip(root / "clip")
    data = tiny_sd.write_dataset(root / "luca", n=3)
    run = root / "runs" / "luca"
    pipe = StableDiffusionPipeline.from_pretrained(str(base), safety_checker=None)
    torch.manual_seed(0)
    params = add_lora(pipe.unet, UNET_TARGETS, 4, 2)
    for epoch in (1, 2):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p) * 0.1)
        meta = kohya_metadata(family="sd15", base_model=str(base), output_name="luca", dim=4, alpha=2,
                              trigger="lucaxyz", dataset_hash="x", steps=epoch * 4, epoch=epoch, num_images=3,
                              resolution=32, unet_lr=1e-4, text_encoder_lr=None, seed=0)
        state = kohya_state_dict(pipe.unet, (), "sd15")
        save_kohya(run / f"luca-{epoch:06d}.safetensors", state, meta)
    save_kohya(run / "luca.safetensors", state, meta)  # the final copy of epoch 2
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps({"prompts": [{"name": "portrait", "prompt": "{trigger}, portrait"},
                                               {"name": "beach", "prompt": "{trigger} on a beach"}]}))
    return {"base": base, "clip": clip, "data": data, "run": run, "prompts": prompts, "root": root}


def eval_settings(world, **extra):
    over = {"evaluate": {"clip_model": str(world["clip"]), "steps": 2, "seeds": [1, 2], "width": 32, "height": 32,
                         **extra}}
    return load_settings(overrides=over).settings


def test_evaluate_run_writes_grid_metrics_and_pick(world, tmp_path):
    s = eval_settings(world)
    out = tmp_path / "evaluation"
    report = evaluate_run(world["run"], out, s.evaluate, s.models, base_model=str(world["base"]),
                          dataset=world["data"], prompts=str(world["prompts"]))
    labels = [r["label"] for r in report["checkpoints"]]
    assert labels == ["checkpoint_1", "checkpoint_2"]  # the final copy of epoch 2 is not evaluated twice
    for label in [*labels, "base_model"]:  # the base model (LoRA strength 0) is always scored
        assert sorted(p.name for p in (out / label).iterdir()) == [
            "beach_s1.png", "beach_s2.png", "portrait_s1.png", "portrait_s2.png"]
    saved = json.loads((out / "quality_evaluation.json").read_text())
    for row in saved["checkpoints"]:
        assert all(isinstance(v, float) and math.isfinite(v) for v in row["metrics"].values()), row
        assert 0 <= row["metrics"]["clip_score"] <= 100 and -1 <= row["metrics"]["identity"] <= 1
    best = max(saved["checkpoints"], key=lambda r: r["score"])
    assert saved["best"]["label"] == best["label"]
    assert (saved["baseline"]["label"], saved["baseline"]["strength"]) == ("base_model", 0.0)
    for row in [saved["baseline"], *saved["checkpoints"]]:  # spread over prompts × seeds, per metric
        assert (row["spread"]["clip_score"]["n"], row["spread"]["diversity"]["n"]) == (4, 2)
        assert row["score"] == pytest.approx(sum(row["image_scores"]) / 4)
    verdict = saved["best"]
    other = "checkpoint_1" if best["label"] == "checkpoint_2" else "checkpoint_2"
    assert (verdict["versus_base"]["against"], verdict["runner_up"]["against"]) == ("base_model", other)
    assert verdict["tie"] == (abs(verdict["runner_up"]["margin"]) <= verdict["runner_up"]["noise"])
    assert "base model" in verdict["verdict"]
    w = saved["score"]["weights"]
    m = best["metrics"]
    assert best["score"] == pytest.approx(w["identity"] * m["identity"] + w["clip_score"] * m["clip_score"] / 100
                                          + w["diversity"] * m["diversity"])
    with Image.open(out / "comparison_grid.png") as grid:
        assert grid.size == (180 + 4 * 256, 28 + 3 * 256)  # rows: base + checkpoints; columns: 2 prompts × 2 seeds
    assert (out / "metrics_per_epoch.png").stat().st_size > 0
    assert "checkpoint_2" in (out / "report.html").read_text()


def test_evaluate_cli_runs_the_stage_with_a_manifest_and_skips_when_up_to_date(world, tmp_path):
    out = tmp_path / "ev"
    args = ["evaluate", str(world["run"]), "--base-model", str(world["base"]), "--prompts", str(world["prompts"]),
            "--dataset", str(world["data"]), "--output", str(out), "--seed", "1", "--json",
            "--set", f"evaluate.clip_model={world['clip']}", "--set", "evaluate.steps=2",
            "--set", "evaluate.width=32", "--set", "evaluate.height=32"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert [r["label"] for r in summary["checkpoints"]] == ["checkpoint_1", "checkpoint_2"]
    manifest = json.loads((out / ".animlora" / "manifests" / "evaluate.json").read_text())
    assert manifest["items"]["done"] == 1 and manifest["settings"]["dataset"] == str(world["data"].resolve())
    stamp = (out / "quality_evaluation.json").stat().st_mtime_ns
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0 and (out / "quality_evaluation.json").stat().st_mtime_ns == stamp


def test_compare_cli_with_strength_sweep(world, tmp_path):
    a, b = world["run"] / "luca-000001.safetensors", world["run"] / "luca-000002.safetensors"
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, [
        "compare", str(a), str(b), "--base-model", str(world["base"]), "--prompts", str(world["prompts"]),
        "--output", str(out), "--seed", "3", "--strength", "0.5", "--strength", "1.0", "--json",
        "--set", f"evaluate.clip_model={world['clip']}", "--set", "evaluate.steps=2",
        "--set", "evaluate.width=32", "--set", "evaluate.height=32",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert [r["label"] for r in summary["checkpoints"]] == [
        "luca-000001@0.5", "luca-000001@1", "luca-000002@0.5", "luca-000002@1"]
    assert sorted(p.name for p in (out / "luca-000001").iterdir()) == [
        "beach_s3_w0.5.png", "beach_s3_w1.png", "portrait_s3_w0.5.png", "portrait_s3_w1.png"]


def _row(label, identity, clip=30.0, diversity=0.2, seeds=2):
    n = len(identity)
    return {"label": label, "score": 0.5 * sum(identity) / n + 0.3 * clip / 100 + 0.2 * diversity,
            "metrics": {"identity": sum(identity) / n, "clip_score": clip, "diversity": diversity},
            "image_scores": [0.5 * v + 0.3 * clip / 100 + 0.2 * diversity for v in identity]}


def test_judge_calls_a_tie_within_noise_and_names_the_deciding_metric():
    from animlora.training.evaluation import judge

    weights = {"identity": 0.5, "clip_score": 0.3, "diversity": 0.2}
    base = _row("base_model", [0.50, 0.52, 0.48, 0.50])
    noisy_a = _row("checkpoint_1", [0.70, 0.60, 0.80, 0.62])
    noisy_b = _row("checkpoint_2", [0.71, 0.62, 0.78, 0.62])  # better by 1e-3 on average, spread 5e-2
    verdict = judge(noisy_b, [noisy_a, noisy_b], base, weights)
    assert verdict["tie"] and verdict["tied_with"] == ["checkpoint_1"] and verdict["decided_by"] is None
    assert verdict["beats_base"] and verdict["versus_base"]["decided_by"] == "identity"
    assert verdict["verdict"].startswith("tie: checkpoint_2 leads checkpoint_1")

    clear = _row("checkpoint_3", [0.90, 0.81, 0.99, 0.82])
    verdict = judge(clear, [noisy_a, clear], base, weights)
    assert not verdict["tie"] and verdict["decided_by"] == "identity"
    same_as_base = _row("checkpoint_4", [0.51, 0.52, 0.48, 0.50])
    verdict = judge(same_as_base, [same_as_base], base, weights)
    assert not verdict["beats_base"] and "does not measurably beat the base model" in verdict["verdict"]


def test_bad_prompt_file_is_named(world, tmp_path):
    bad = tmp_path / "prompts.json"
    bad.write_text("{not json")
    s = eval_settings(world)
    with pytest.raises(BadInputError, match=r"prompts.json: not valid JSON \(line 1"):
        evaluate_checkpoints(file_checkpoints([world["run"] / "luca.safetensors"]), tmp_path / "o", s.evaluate,
                             s.models, base_model=str(world["base"]), prompts=str(bad))


def test_kohya_engine_writes_tomls_and_launches_sd_scripts(world, tmp_path):
    checkout = tmp_path / "sd-scripts"
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "train_network.py").write_text("# fake\n")
    record = tmp_path / "argv.json"
    fake = checkout / "venv" / "bin" / "accelerate"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$PWD\" \"$@\" > {record}\n")
    fake.chmod(0o755)
    run = tmp_path / "run"
    args = ["train", "--dataset", str(world["data"]), "--base-model", str(world["base"]), "--preset",
            "3d-character-sd15", "--engine", "kohya", "--sd-scripts", str(checkout), "--output", str(run), "--json"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    argv = record.read_text().splitlines()
    assert argv == [str(checkout), "launch", "--num_cpu_threads_per_process", "1", str(checkout / "train_network.py"),
                    "--config_file", str(run / "training_config.toml")]
    config = tomllib.loads((run / "training_config.toml").read_text())
    assert config["network_dim"] == 32 and config["network_alpha"] == 16
    assert config["unet_lr"] == 1e-4 and config["text_encoder_lr"] == 5e-5
    assert config["lr_scheduler"] == "cosine_with_restarts" and config["max_train_epochs"] == 15
    assert config["save_every_n_epochs"] == 3 and config["pretrained_model_name_or_path"] == str(world["base"])
    dataset = tomllib.loads((run / "dataset_config.toml").read_text())
    assert dataset["general"]["flip_aug"] is False and dataset["general"]["color_aug"] is False
    (group,) = dataset["datasets"]
    assert (group["resolution"], group["min_bucket_reso"], group["max_bucket_reso"]) == (512, 384, 768)
    (subset,) = group["subsets"]
    assert subset["alpha_mask"] is True
    captions = json.loads(Path(subset["metadata_file"]).read_text())
    assert len(captions) == 3 and all(os.path.isabs(k) and v["caption"] for k, v in captions.items())

    missing = CliRunner().invoke(app, args[:-5] + ["--sd-scripts", str(tmp_path / "none"), "--output", str(run)])
    assert missing.exit_code != 0
    assert "sd-scripts checkout does not exist" in str(missing.exception)


def test_a_single_file_flux_base_without_its_configs_is_one_error_naming_the_fix(tmp_path):
    from safetensors.torch import save_file

    from animlora.errors import ConfigError

    single = tmp_path / "flux1-dev.safetensors"  # a BFL-layout transformer file: no text encoders, no VAE
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(3, 1), "guidance_in.in_layer.weight": torch.zeros(1)},
              str(single))
    s = load_settings().settings
    with pytest.raises(ConfigError, match="holds only the transformer.*train.base_model_config, or "
                                          "--base-model-config on train, evaluate and compare"):
        evaluate_checkpoints([], tmp_path / "evaluation", s.evaluate, s.models, base_model=str(single))
    assert not (tmp_path / "evaluation").exists()
