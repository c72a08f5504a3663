"""What the training tests share: the tiny settings (SD 1.x and Flux), a trainer from them, and
the kill -9 of a real ``animlora train`` process after a saved state. The tiny models and the
dataset are the session fixtures ``tiny_sd15``, ``tiny_flux`` and ``tiny_luca`` (conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: a tiny SD 1.x run: 16 px, rank 4, no samples/TensorBoard/checkpointing, fp32, constant LR
TINY_SD = {
    "resolution": 16, "min_bucket": 8, "max_bucket": 32, "bucket_step": 8, "network_dim": 4, "network_alpha": 2,
    "sample_every_n_epochs": 0, "gradient_checkpointing": False, "tensorboard": False, "mixed_precision": "no",
    "min_snr_gamma": 0, "lr_scheduler": "constant", "unet_lr": 2e-3, "text_encoder_lr": 1e-3,
}
#: the same for Flux: text encoders frozen (cached), no caption shuffle, fp32 files
TINY_FLUX = {
    **{k: v for k, v in TINY_SD.items() if k != "text_encoder_lr"},
    "family": "flux", "shuffle_caption": False, "train_text_encoder": False, "unet_lr": 1e-2, "save_precision": "fp32",
}


# every key sd-scripts' train_network.py writes for a LoRA trained from a dataset config, with
# networks/lora.py's sshs_* hashes and sai_model_spec.build_metadata's modelspec.* fields
# (kohya-ss/sd-scripts 48d368fa; ss_vae_* only with --vae, ss_sd_model_hash only for a file)
SD_SCRIPTS_KEYS = (
    "ss_session_id", "ss_training_started_at", "ss_output_name", "ss_learning_rate", "ss_text_encoder_lr",
    "ss_unet_lr", "ss_num_train_images", "ss_num_validation_images", "ss_num_reg_images",
    "ss_num_batches_per_epoch", "ss_num_epochs", "ss_gradient_checkpointing", "ss_gradient_accumulation_steps",
    "ss_max_train_steps", "ss_lr_warmup_steps", "ss_lr_scheduler", "ss_network_module", "ss_network_dim",
    "ss_network_alpha", "ss_network_dropout", "ss_mixed_precision", "ss_full_fp16", "ss_v2",
    "ss_base_model_version", "ss_clip_skip", "ss_max_token_length", "ss_cache_latents", "ss_seed", "ss_lowram",
    "ss_noise_offset", "ss_multires_noise_iterations", "ss_multires_noise_discount", "ss_adaptive_noise_scale",
    "ss_zero_terminal_snr", "ss_training_comment", "ss_sd_scripts_commit_hash", "ss_optimizer", "ss_max_grad_norm",
    "ss_caption_dropout_rate", "ss_caption_dropout_every_n_epochs", "ss_caption_tag_dropout_rate",
    "ss_face_crop_aug_range", "ss_prior_loss_weight", "ss_min_snr_gamma", "ss_scale_weight_norms",
    "ss_ip_noise_gamma", "ss_debiased_estimation", "ss_noise_offset_random_strength",
    "ss_ip_noise_gamma_random_strength", "ss_loss_type", "ss_huber_schedule", "ss_huber_scale", "ss_huber_c",
    "ss_fp8_base", "ss_fp8_base_unet", "ss_validation_seed", "ss_validation_split", "ss_max_validation_steps",
    "ss_validate_every_n_epochs", "ss_validate_every_n_steps", "ss_resize_interpolation", "ss_datasets",
    "ss_tag_frequency", "ss_dataset_dirs", "ss_batch_size_per_device", "ss_total_batch_size", "ss_resolution",
    "ss_color_aug", "ss_flip_aug", "ss_random_crop", "ss_shuffle_caption", "ss_enable_bucket",
    "ss_bucket_no_upscale", "ss_min_bucket_reso", "ss_max_bucket_reso", "ss_keep_tokens", "ss_reg_dataset_dirs",
    "ss_bucket_info", "ss_network_args", "ss_sd_model_name", "ss_training_finished_at", "ss_steps", "ss_epoch",
    "sshs_model_hash", "sshs_legacy_hash", "modelspec.sai_model_spec", "modelspec.architecture",
    "modelspec.implementation", "modelspec.title", "modelspec.resolution", "modelspec.date",
    "modelspec.prediction_type", "modelspec.implementation_version",
)


def overrides(tiny: dict[str, Any], **train: Any) -> dict[str, Any]:
    """A settings tree (``load_settings(overrides=...)``, or a ``--config`` file) of ``tiny`` + ``train``."""
    return {"train": {**tiny, **train}, "project": {"seed": 7}}


def settings(tiny: dict[str, Any], **train: Any) -> Any:
    from animlora.config import load_settings

    return load_settings(overrides=overrides(tiny, **train)).settings


def make_trainer(tiny: dict[str, Any], **train: Any) -> Any:
    from animlora.training.trainer import LoraTrainer

    s = settings(tiny, **train)
    return LoraTrainer(s.train, s.models, seed=s.project.seed)


def sample_prompt_file(folder: Path) -> Path:
    """One sample prompt, for runs that sample (every prompt × seed costs a pipeline run)."""
    path = folder / "sample_prompts.json"
    path.write_text(json.dumps({"prompts": [{"name": "portrait", "prompt": "{trigger}, portrait",
                                             "negative": "blurry"}]}))
    return path


def kill_train_after_state(data: Path, base: Path, tree: dict[str, Any], run: Path, *, step: int,
                           extra: tuple[str, ...] = ()) -> None:
    """Start ``animlora train`` with the settings ``tree`` into ``run``, SIGKILL it (its process
    group: ``--num-processes`` ranks too) once a resume state of ``step`` or later is saved, and
    check it died before its final file."""
    config = run.parent / f"{run.name}.yaml"
    config.write_text(json.dumps(tree))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "animlora", "train", "--dataset", str(data), "--base-model", str(base),
         "--config", str(config), "--output", str(run), "--json", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    latest = run / "state" / "latest.json"
    deadline = time.monotonic() + 600  # a loaded machine can take minutes to load the models
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if latest.is_file() and json.loads(latest.read_text())["step"] >= step:
                break
        except (OSError, ValueError):  # replaced while read
            pass
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
