"""The kohya engine: the same preset, trained by a kohya sd-scripts checkout.

Writes three files into the run folder and launches
``accelerate launch train_network.py --config_file training_config.toml`` (or
``sdxl_train_network.py``) from the checkout:

- ``dataset_config.toml``  one fine-tuning subset (``metadata_file``), alpha mask, buckets
- ``kohya_metadata.json``  absolute image path → caption (our captions live in ``captions/``,
                           not beside the images, so the subset reads them from here)
- ``training_config.toml`` every training argument, from the same ``train`` settings
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.config.schema import TrainSettings
from animlora.errors import BadInputError
from animlora.io.files import atomic_write_json, atomic_write_text
from animlora.training.dataset import TrainingDataset

OPTIMIZERS = {"adamw": "AdamW", "adamw8bit": "AdamW8bit", "prodigy": "Prodigy"}


@dataclass(frozen=True)
class KohyaJob:
    command: tuple[str, ...]
    cwd: Path
    dataset_toml: Path
    config_toml: Path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(tables: dict[str, Any]) -> str:
    """A small TOML writer for flat keys, ``[table]`` and ``[[array.of.tables]]``."""
    lines: list[str] = []
    for key, value in tables.items():
        if not isinstance(value, dict | list) or (isinstance(value, list) and not (value and isinstance(value[0], dict))):
            lines.append(f"{key} = {toml_value(value)}")
    for key, value in tables.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for entry in value:
                lines += ["", f"[[{key}]]"]
                for k, v in entry.items():
                    if isinstance(v, list) and v and isinstance(v[0], dict):
                        for sub in v:
                            lines += ["", f"  [[{key}.{k}]]"] + [f"  {sk} = {toml_value(sv)}" for sk, sv in sub.items()]
                    else:
                        lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def check_checkout(folder: str, family: str) -> Path:
    script = "sdxl_train_network.py" if family == "sdxl" else "train_network.py"
    if not folder:
        raise BadInputError(".", "the kohya engine needs the sd-scripts checkout: pass --sd-scripts DIR "
                            "(git clone https://github.com/kohya-ss/sd-scripts)")
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "the sd-scripts checkout does not exist; "
                            "git clone https://github.com/kohya-ss/sd-scripts there, or fix --sd-scripts")
    if not (root / script).is_file():
        raise BadInputError(root, f"not an sd-scripts checkout (no {script}); point --sd-scripts at the repository root")
    return root


def accelerate_command(root: Path) -> list[str]:
    """sd-scripts' own venv first (its usual install), then ``accelerate`` on PATH, then ours."""
    for candidate in (root / "venv" / "bin" / "accelerate", root / ".venv" / "bin" / "accelerate"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which("accelerate")
    if found:
        return [found]
    return [sys.executable, "-m", "accelerate.commands.launch"]


def write_kohya_files(
    settings: TrainSettings, data: TrainingDataset, run_dir: Path, *, base_model: str, family: str, seed: int,
    output_name: str, sample_prompts: list[str],
) -> tuple[Path, Path]:
    s = settings
    run_dir.mkdir(parents=True, exist_ok=True)
    meta_path = atomic_write_json(run_dir / "kohya_metadata.json",
                                  {str(item.image): {"caption": item.caption} for item in data.items})
    dataset = {
        "general": {
            "shuffle_caption": s.shuffle_caption,
            "keep_tokens": s.keep_tokens,
            "caption_dropout_rate": s.caption_dropout,
            "flip_aug": s.flip_aug,
            "color_aug": s.color_aug,
        },
        "datasets": [{
            "resolution": s.resolution,
            "batch_size": s.batch_size,
            "enable_bucket": s.enable_buckets,
            "min_bucket_reso": s.bucket_min,
            "max_bucket_reso": s.bucket_max,
            "bucket_reso_steps": s.bucket_step,
            "subsets": [{
                "image_dir": str(data.root / "images"),
                "metadata_file": str(meta_path),
                "num_repeats": s.repeats,
                "alpha_mask": s.alpha_mask,
            }],
        }],
    }
    dataset_toml = atomic_write_text(run_dir / "dataset_config.toml", to_toml(dataset))
    prompts_txt = atomic_write_text(
        run_dir / "sample_prompts.txt",
        "".join(f"{p} --w {s.resolution} --h {s.resolution} --d {seed} --s {s.sample_steps} --l {s.sample_cfg}\n"
                for p in sample_prompts),
    )
    config: dict[str, Any] = {
        "pretrained_model_name_or_path": base_model,
        "dataset_config": str(dataset_toml),
        "output_dir": str(run_dir),
        "output_name": output_name,
        "save_model_as": "safetensors",
        "save_precision": {"fp32": "float"}.get(s.save_precision, s.save_precision),
        "network_module": "networks.lora",
        "network_dim": s.network_dim,
        "network_alpha": s.network_alpha,
        "network_train_unet_only": not s.train_text_encoder,
        "unet_lr": s.unet_lr,
        "optimizer_type": OPTIMIZERS[s.optimizer],
        "optimizer_args": [f"weight_decay={s.weight_decay}"],
        "lr_scheduler": s.lr_scheduler,
        "lr_warmup_steps": s.lr_warmup_steps,
        "max_train_epochs": s.epochs,
        "save_every_n_epochs": s.save_every_n_epochs,
        "save_state": True,
        "mixed_precision": s.mixed_precision,
        "max_grad_norm": s.max_grad_norm,
        "noise_offset": s.noise_offset,
        "cache_latents": s.cache_latents,
        "gradient_checkpointing": s.gradient_checkpointing,
        "seed": seed,
        "sdpa": True,
        "logging_dir": str(run_dir / "logs"),
        "log_with": "tensorboard",
        "training_comment": f"trigger: {data.trigger}",
    }
    if s.train_text_encoder:
        config["text_encoder_lr"] = s.text_encoder_lr
    if s.lr_scheduler == "cosine_with_restarts":
        config["lr_scheduler_num_cycles"] = s.lr_restarts
    if s.min_snr_gamma:
        config["min_snr_gamma"] = s.min_snr_gamma
    if s.sample_every_n_epochs:
        config.update(sample_every_n_epochs=s.sample_every_n_epochs, sample_prompts=str(prompts_txt),
                      sample_sampler="euler_a")
    if family == "sdxl":
        config["cache_text_encoder_outputs"] = False
    config_toml = atomic_write_text(run_dir / "training_config.toml", to_toml(config))
    return dataset_toml, config_toml


def prepare_kohya(
    settings: TrainSettings, data: TrainingDataset, run_dir: Path, *, base_model: str, family: str, seed: int,
    output_name: str, sample_prompts: list[str],
) -> KohyaJob:
    """Check the checkout, write the TOMLs, return the command (not run yet)."""
    root = check_checkout(settings.sd_scripts, family)
    dataset_toml, config_toml = write_kohya_files(
        settings, data, run_dir, base_model=base_model, family=family, seed=seed, output_name=output_name,
        sample_prompts=sample_prompts,
    )
    script = root / ("sdxl_train_network.py" if family == "sdxl" else "train_network.py")
    command = (*accelerate_command(root), "launch", "--num_cpu_threads_per_process", "1", str(script),
               "--config_file", str(config_toml))
    if command[1:3] == ("-m", "accelerate.commands.launch"):
        command = tuple(c for i, c in enumerate(command) if not (i == 3 and c == "launch"))
    return KohyaJob(command, root, dataset_toml, config_toml)


def launch(job: KohyaJob) -> int:
    """Run sd-scripts in the foreground (its own progress output); return its exit code."""
    import subprocess

    try:
        return subprocess.call(list(job.command), cwd=str(job.cwd))
    except OSError as exc:
        raise BadInputError(job.command[0], f"cannot start accelerate ({exc.strerror}); "
                            "install it in the sd-scripts environment") from exc
