"""The built-in trainer on tiny models: it learns, resumes after kill -9 exactly, loads single-file
bases, trains SDXL, and refuses bad input up front."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import sd_single_file  # noqa: E402
import tiny_sd  # noqa: E402
from animlora.errors import AnimloraError, BadInputError, ConfigError, StageError  # noqa: E402
from train_support import (  # noqa: E402
    SD_SCRIPTS_KEYS,
    TINY_SD,
    kill_train_after_state,
    make_trainer,
    overrides,
    sample_prompt_file,
)


def trainer(**train):
    return make_trainer(TINY_SD, **train)


@pytest.fixture
def base(tiny_sd15) -> Path:
    return tiny_sd15


@pytest.fixture
def data(tiny_luca) -> Path:
    return tiny_luca


def eval_loss(base: Path, data: Path, lora: Path | None) -> float:
    """Denoising loss on the dataset at fixed timesteps and noise (the same for every model)."""
    from diffusers import StableDiffusionPipeline

    from animlora.training.inputs import load_pixels

    pipe = StableDiffusionPipeline.from_pretrained(str(base), safety_checker=None)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        ids = pipe.tokenizer(["lucaxyz, 3d character, smiling"], padding="max_length", max_length=32,
                             return_tensors="pt").input_ids
        emb = pipe.text_encoder(ids)[0]
        for image in sorted((data / "images").glob("*.png")):
            rgb, _, _ = load_pixels(image, (16, 16))
            lat = pipe.vae.encode(torch.from_numpy(rgb)[None]).latent_dist.mean * pipe.vae.config.scaling_factor
            for t in (100, 300, 500, 700, 900):
                noise = torch.randn(lat.shape, generator=gen)
                ts = torch.tensor([t])
                pred = pipe.unet(pipe.scheduler.add_noise(lat, noise, ts), ts, emb).sample
                total += float(((pred - noise) ** 2).mean())
    return total


def tensorboard_losses(folder: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))  # reads every events file; a restart's overlap is purged
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("loss")}


def test_training_learns_and_kill9_resume_equals_uninterrupted_run(base, data, tmp_path):
    settings = {"epochs": 3, "save_every_n_epochs": 2, "save_state_every_n_steps": 2, "caption_dropout": 0.2,
                "noise_offset": 0.05, "min_snr_gamma": 5.0, "lr_scheduler": "cosine_with_restarts",
                "unet_lr": 3e-2, "alpha_mask": False, "tensorboard": True, "sample_every_n_epochs": 3,
                "sample_prompts": str(sample_prompt_file(tmp_path)), "sample_seeds": [1], "sample_steps": 2}
    # 1. an uninterrupted run learns: LoRA weights move, the loss at fixed noise drops
    reference = trainer(**settings).train(data, tmp_path / "ref", str(base))
    assert reference.steps == 12
    assert [p.name for p in reference.checkpoints] == ["luca-000002.safetensors", "luca-000003.safetensors"]
    weights = load_file(str(reference.final))
    ups = [v for k, v in weights.items() if k.endswith("lora_up.weight")]
    assert ups and all(float(v.abs().max()) > 0 for v in ups)  # up matrices start at zero
    assert any(k.startswith("lora_te_") for k in weights)
    with safe_open(str(reference.final), "pt") as f:
        meta = f.metadata()
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_trigger_word"], meta["ss_steps"]) == (
        "4", "2.0", "lucaxyz", "12")
    assert meta["ss_base_model_version"] == "sd_v1" and len(meta["ss_dataset_hash"]) == 64
    assert sorted(set(SD_SCRIPTS_KEYS) - set(meta)) == []
    assert (meta["ss_optimizer"], meta["ss_lr_scheduler"], meta["ss_num_epochs"], meta["ss_max_train_steps"]) == (
        "torch.optim.adamw.AdamW(weight_decay=0.01)", "cosine_with_restarts", "3", "12")
    assert (meta["modelspec.architecture"], meta["modelspec.implementation"], meta["modelspec.resolution"],
            meta["modelspec.trigger_phrase"], meta["modelspec.title"]) == (
        "stable-diffusion-v1/lora", "diffusers", "16x16", "lucaxyz", "luca")
    captions = [p.read_text() for p in sorted((data / "captions").glob("*.txt"))]
    tags = json.loads(meta["ss_tag_frequency"])["luca"]
    assert tags["lucaxyz"] == len(captions) and sum(tags.values()) == sum(len(c.split(",")) for c in captions)
    assert json.loads(meta["ss_dataset_dirs"]) == {"luca": {"n_repeats": 1, "img_count": 4}}
    assert {v.dtype for v in weights.values()} == {torch.float16}  # train.save_precision default
    from animlora.training.metadata import addnet_hashes

    assert addnet_hashes(weights, meta)["sshs_model_hash"] == meta["sshs_model_hash"]
    before, after = eval_loss(base, data, None), eval_loss(base, data, reference.final)
    assert after < before * 0.99, (before, after)  # a random tiny U-Net learns slowly (-1.4% here)
    report = json.loads((tmp_path / "ref" / "training_results.json").read_text())
    assert report["steps"] == 12 and report["final"] == "luca.safetensors"
    assert len(report["loss"]) == 12 and sorted(report["epoch_loss"]) == ["1", "2", "3"]
    assert (tmp_path / "ref" / "diffusers" / "pytorch_lora_weights.safetensors").is_file()
    # re-running the finished run trains nothing and keeps the whole history
    again = trainer(**settings).train(data, tmp_path / "ref", str(base))
    assert (again.resumed_from, again.steps) == (12, 12)
    assert json.loads((tmp_path / "ref" / "training_results.json").read_text())["loss"] == report["loss"]

    # 2. the same run killed with SIGKILL after a saved state, then resumed, ends bit-identical
    run = tmp_path / "run"
    kill_train_after_state(data, base, overrides(TINY_SD, **settings), run, step=4)
    assert not (run / "luca.safetensors").exists()

    resumed = trainer(**settings).train(data, run, str(base))
    assert 4 <= resumed.resumed_from < 12
    assert resumed.steps == 12
    a, b = load_file(str(reference.final)), load_file(str(resumed.final))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the samples of the last epoch: made by the shared sample loop, the same pixels after the resume
    sample = Path("samples") / "epoch_000003" / "portrait_1.png"
    assert (tmp_path / "ref" / sample).read_bytes() == (run / sample).read_bytes()
    # the loss history survives the kill: the JSON and TensorBoard hold every step once
    history = json.loads((run / "training_results.json").read_text())
    assert history["loss"] == report["loss"] and history["epoch_loss"] == report["epoch_loss"]
    curve = tensorboard_losses(run / "logs" / "train")
    assert sorted(curve) == list(range(1, 13))
    assert [curve[i] for i in range(1, 13)] == pytest.approx(report["loss"], rel=1e-6)


def test_single_file_checkpoint_base_model(base, data, tmp_path):
    single = sd_single_file.write_single_file(base, tmp_path / "tiny-sd15.safetensors")
    t = trainer(epochs=1, base_model_config=str(base), gradient_checkpointing=True)
    _, ref, plan = t.check_inputs(data, str(single))
    assert (ref.kind, ref.family) == ("single_file", "sd15")
    result = t.train(data, tmp_path / "run", str(single))
    assert result.steps == plan.total_steps == 4
    assert any(k.startswith("lora_te_text_model_") for k in load_file(str(result.final)))


def test_a_second_run_in_one_process_may_use_another_precision(base, data, tmp_path):
    """accelerate keeps one state per process; a caller's earlier Accelerator (or an earlier run)
    with another mixed precision must not make the next run fail."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # whatever an earlier test left
    Accelerator(cpu=True, mixed_precision="bf16")  # what a bf16 run leaves behind
    result = trainer(epochs=1).train(data, tmp_path / "run", str(base))
    assert result.steps == 4 and result.final.is_file()


def test_sdxl_trains_and_loads_back(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    base = tiny_sd.build_sdxl(tmp_path / "sdxl")
    data = tiny_sd.write_dataset(tmp_path / "luca", n=2, size=(40, 32))
    result = trainer(epochs=1, family="sdxl").train(data, tmp_path / "run", str(base))
    keys = load_file(str(result.final)).keys()
    assert any(k.startswith("lora_te1_text_model_") for k in keys)
    assert any(k.startswith("lora_te2_text_model_") for k in keys)
    assert any(k.startswith("lora_unet_input_blocks_4_1_") for k in keys)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(base))
    pipe.load_lora_weights(str(result.final))  # loads without unexpected keys


def test_plan_counts_steps_before_loading(base, tmp_path):
    data = tiny_sd.write_dataset(tmp_path / "luca", n=5)
    _, _, plan = trainer(epochs=3, batch_size=2, repeats=2).check_inputs(data, str(base))
    assert (plan.images, plan.steps_per_epoch, plan.total_steps) == (5, 5, 15)  # ceil(10 / 2) per epoch
    assert plan.buckets == {"16x16": 5}


def test_bad_dataset_names_the_files(base, tmp_path):
    data = tiny_sd.write_dataset(tmp_path / "luca", n=3)
    (data / "captions" / "img_01.txt").unlink()
    (data / "images" / "img_02.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError) as err:
        trainer().check_inputs(data, str(base))
    assert "images/img_01.png" in str(err.value) and "images/img_02.png" in str(err.value)
    with pytest.raises(BadInputError, match="no images/ folder"):
        trainer().check_inputs(tmp_path, str(base))


def test_wrong_family_and_missing_base_are_clear(base, data, tmp_path):
    with pytest.raises(ConfigError, match="Stable Diffusion 1.x weights but the settings ask for SDXL"):
        trainer(family="sdxl").check_inputs(data, str(base))
    with pytest.raises(BadInputError, match="does not exist"):
        trainer().check_inputs(data, str(tmp_path / "nope"))


def test_full_size_model_on_cpu_needs_a_flag(data, tmp_path):
    fake = tmp_path / "sd15-real"
    (fake / "unet").mkdir(parents=True)
    (fake / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (fake / "unet" / "config.json").write_text(json.dumps({"block_out_channels": [320, 640, 1280, 1280]}))
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(StageError, match="--allow-cpu"):
        trainer().check_inputs(data, str(fake))
    _, _, plan = trainer(allow_cpu=True).check_inputs(data, str(fake))
    assert plan.memory_estimate_gb and plan.memory_estimate_gb > 3


def test_full_disk_leaves_no_half_written_checkpoint(tmp_path, monkeypatch):
    from animlora.training.kohya_format import save_kohya

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "luca.safetensors"
    with pytest.raises(AnimloraError, match="No space left on device"):
        save_kohya(target, {"a.alpha": torch.tensor(1.0)}, {})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
