"""What a LoRA file says about its training: sd-scripts' ``ss_*`` keys, ``sshs_*`` hashes and
ModelSpec's ``modelspec.*`` core fields, written the way sd-scripts writes them.

sd-scripts (``train_network.py``'s metadata dict, ``networks/lora.py``'s ``save_weights`` and
``library/sai_model_spec.py``) is the reference: A1111's and ComfyUI's metadata viewers,
civitai and the additional-networks extension read these keys. Values are ``str(value)`` of
the Python value, as sd-scripts stores them (``True``, ``None``, ``(512, 512)``), JSON where
sd-scripts writes JSON. The optimizer and its arguments live here too, so the built-in trainer
and the sd-scripts TOML use the same ones.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from animlora.config.schema import TrainSettings

# (sd-scripts optimizer_type, class path sd-scripts records in ss_optimizer)
OPTIMIZERS = {
    "adamw": ("AdamW", "torch.optim.adamw.AdamW"),
    "adamw8bit": ("AdamW8bit", "bitsandbytes.optim.adamw.AdamW8bit"),
    "prodigy": ("Prodigy", "prodigyopt.prodigy.Prodigy"),
}
LR_SCHEDULERS = {"constant": "constant_with_warmup"}  # `constant` keeps a warm-up (0 = none)


def optimizer_kwargs(settings: TrainSettings) -> dict[str, Any]:
    """Arguments of the optimizer besides the parameter groups (both engines)."""
    kwargs: dict[str, Any] = {"weight_decay": settings.weight_decay}
    if settings.optimizer == "prodigy":
        kwargs.update(safeguard_warmup=True, use_bias_correction=True)
    return kwargs


def lr_scheduler_name(settings: TrainSettings) -> str:
    return LR_SCHEDULERS.get(settings.lr_scheduler, settings.lr_scheduler)


def tag_frequency(captions: list[str]) -> dict[str, int]:
    """sd-scripts' ``set_tag_frequency``: comma-separated tags, stripped, lower-cased, counted."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in caption.split(","):
            tag = tag.strip().lower()
            if tag:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def model_hashes(path: Path) -> dict[str, str]:
    """A1111's old (8 hex of 64 KiB at 1 MiB) and new (sha256) hashes of a single-file base model."""
    old = hashlib.sha256()
    new = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        old.update(handle.read(0x10000))
        handle.seek(0)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            new.update(chunk)
    return {"ss_sd_model_hash": old.hexdigest()[:8], "ss_new_sd_model_hash": new.hexdigest()}


def addnet_hashes(state: dict[str, Any], metadata: dict[str, str]) -> dict[str, str]:
    """``sshs_model_hash`` / ``sshs_legacy_hash`` as sd-scripts' ``precalculate_safetensors_hashes``:
    over the file the tensors make with only the ``ss_*`` metadata."""
    from safetensors.torch import save

    data = save(state, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = int.from_bytes(data[:8], "little")
    return {"sshs_model_hash": hashlib.sha256(data[8 + header:]).hexdigest(),
            "sshs_legacy_hash": hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]}


def modelspec(*, family: str, title: str, resolution: int, trigger: str, prediction_type: str,
              timestamp: float) -> dict[str, str]:
    """ModelSpec 1.0.1 core fields of a LoRA, as sd-scripts' ``build_metadata``."""
    from animlora import __version__

    arch = {"sdxl": "stable-diffusion-xl-v1-base", "flux": "flux-1-dev"}.get(family, "stable-diffusion-v1")
    meta = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": arch + "/lora",
        "modelspec.implementation": {"sdxl": "https://github.com/Stability-AI/generative-models",
                                     "flux": "https://github.com/black-forest-labs/flux"}.get(family, "diffusers"),
        "modelspec.title": title,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(timestamp)).isoformat(),
        "modelspec.prediction_type": "v" if prediction_type == "v_prediction" else "epsilon",
        "modelspec.implementation_version": f"animlora/{__version__}",
    }
    if family == "flux":  # sd-scripts writes no prediction type for Flux
        del meta["modelspec.prediction_type"]
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    return meta


def flux_metadata(settings: TrainSettings, transformer: Any) -> dict[str, str]:
    """The keys sd-scripts' ``flux_train_network.py`` adds (``update_metadata``) and the [dev] /
    [schnell] architecture (ModelSpec ``flux-1-dev`` / ``flux-1-schnell``)."""
    s = settings
    dev = bool(getattr(transformer.config, "guidance_embeds", True))
    values: dict[str, Any] = {
        "ss_model_type": "dev" if dev else "schnell",
        "ss_apply_t5_attn_mask": False,
        "ss_weighting_scheme": "none",
        "ss_logit_mean": 0.0,
        "ss_logit_std": 1.0,
        "ss_mode_scale": 1.29,
        "ss_guidance_scale": s.guidance_scale,
        "ss_timestep_sampling": s.timestep_sampling,
        "ss_sigmoid_scale": s.sigmoid_scale,
        "ss_model_prediction_type": "raw",
        "ss_discrete_flow_shift": s.discrete_flow_shift,
        "ss_animlora_quantize_base": s.quantize_base,  # int8/NF4 (bitsandbytes) is not sd-scripts' fp8_base
        "modelspec.architecture": ("flux-1-dev" if dev else "flux-1-schnell") + "/lora",
    }
    return {k: str(v) for k, v in values.items()}


def run_metadata(settings: TrainSettings, *, captions: list[str], dataset_name: str, family: str,
                 base_model: str, base_model_file: Path | None, seed: int, steps_per_epoch: int,
                 total_steps: int, buckets: dict[str, int], mixed_precision: str, session_id: int,
                 started_at: float, trigger: str) -> dict[str, str]:
    """Everything sd-scripts' ``train_network.py`` records once per run (steps, epoch and the
    finish time are added per save). ``buckets``: ``"WxH"`` → image count."""
    from animlora import __version__

    s = settings
    images = len(captions)
    optimizer = OPTIMIZERS[s.optimizer][1] + "(" + ",".join(f"{k}={v}" for k, v in optimizer_kwargs(s).items()) + ")"
    bucket_info = {"buckets": {i: {"resolution": tuple(int(x) for x in key.split("x")), "count": count}
                               for i, (key, count) in enumerate(sorted(buckets.items()))}}
    dirs = {dataset_name: {"n_repeats": s.repeats, "img_count": images}}
    subset = {"img_count": images, "num_repeats": s.repeats, "color_aug": s.color_aug, "flip_aug": s.flip_aug,
              "random_crop": False, "shuffle_caption": s.shuffle_caption, "keep_tokens": s.keep_tokens,
              "image_dir": dataset_name, "alpha_mask": s.alpha_mask}
    datasets = [{"is_dreambooth": False, "batch_size_per_device": s.batch_size, "num_train_images": images * s.repeats,
                 "num_reg_images": 0, "resolution": (s.resolution, s.resolution), "enable_bucket": s.enable_buckets,
                 "min_bucket_reso": s.min_bucket, "max_bucket_reso": s.max_bucket,
                 "tag_frequency": {dataset_name: tag_frequency(captions)}, "bucket_info": bucket_info,
                 "subsets": [subset]}]
    values: dict[str, Any] = {
        "ss_session_id": session_id,
        "ss_training_started_at": started_at,
        "ss_learning_rate": s.unet_lr,
        "ss_text_encoder_lr": s.text_encoder_lr if s.train_text_encoder else None,
        "ss_unet_lr": s.unet_lr,
        "ss_num_train_images": images * s.repeats,  # sd-scripts counts repeats
        "ss_num_validation_images": 0,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": steps_per_epoch,
        "ss_num_epochs": s.epochs,
        "ss_gradient_checkpointing": s.gradient_checkpointing,
        "ss_gradient_accumulation_steps": 1,
        "ss_max_train_steps": total_steps,
        "ss_lr_warmup_steps": s.lr_warmup_steps,
        "ss_lr_scheduler": lr_scheduler_name(s),
        "ss_network_dropout": None,
        "ss_mixed_precision": mixed_precision,
        "ss_full_fp16": False,
        "ss_clip_skip": None,  # the text encoder's last layer (SD 1.x) / penultimate (SDXL), as sd-scripts' default
        "ss_max_token_length": None,
        "ss_cache_latents": s.cache_latents,
        "ss_seed": seed,
        "ss_lowram": False,
        "ss_noise_offset": s.noise_offset or None,
        "ss_multires_noise_iterations": None,
        "ss_multires_noise_discount": 0.3,
        "ss_adaptive_noise_scale": None,
        "ss_zero_terminal_snr": False,
        "ss_sd_scripts_commit_hash": f"(animlora {__version__})",
        "ss_optimizer": optimizer,
        "ss_max_grad_norm": s.max_grad_norm,
        "ss_caption_dropout_rate": s.caption_dropout,
        "ss_caption_dropout_every_n_epochs": None,
        "ss_caption_tag_dropout_rate": 0.0,
        "ss_face_crop_aug_range": None,
        "ss_prior_loss_weight": 1.0,
        "ss_min_snr_gamma": s.min_snr_gamma or None,
        "ss_scale_weight_norms": None,
        "ss_ip_noise_gamma": None,
        "ss_debiased_estimation": False,
        "ss_noise_offset_random_strength": False,
        "ss_ip_noise_gamma_random_strength": False,
        "ss_loss_type": "l2",
        "ss_huber_schedule": "snr",
        "ss_huber_scale": 1.0,
        "ss_huber_c": 0.1,
        "ss_fp8_base": False,
        "ss_fp8_base_unet": False,
        "ss_validation_seed": None,
        "ss_validation_split": 0.0,
        "ss_max_validation_steps": None,
        "ss_validate_every_n_epochs": None,
        "ss_validate_every_n_steps": None,
        "ss_resize_interpolation": None,
        "ss_datasets": json.dumps(datasets),
        "ss_batch_size_per_device": s.batch_size,
        "ss_total_batch_size": s.batch_size,
        "ss_resolution": (s.resolution, s.resolution),
        "ss_color_aug": s.color_aug,
        "ss_flip_aug": s.flip_aug,
        "ss_random_crop": False,
        "ss_shuffle_caption": s.shuffle_caption,
        "ss_enable_bucket": s.enable_buckets,
        "ss_bucket_no_upscale": False,
        "ss_min_bucket_reso": s.min_bucket,
        "ss_max_bucket_reso": s.max_bucket,
        "ss_keep_tokens": s.keep_tokens,
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_reg_dataset_dirs": json.dumps({}),
        "ss_tag_frequency": json.dumps({dataset_name: tag_frequency(captions)}),
        "ss_bucket_info": json.dumps(bucket_info),
        "ss_sd_model_name": Path(base_model).name if base_model else "",
        "ss_training_comment": f"trigger: {trigger}" if trigger else None,
    }
    if base_model_file is not None and base_model_file.is_file():
        values.update(model_hashes(base_model_file))
    return {k: str(v) for k, v in values.items()}
