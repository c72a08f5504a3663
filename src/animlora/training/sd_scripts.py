"""The kohya engine: the same preset, trained by a kohya sd-scripts checkout.

Writes three files into the run folder and launches
``accelerate launch train_network.py --config_file training_config.toml`` (or
``sdxl_train_network.py``) from the checkout:

- ``dataset_config.toml``  one fine-tuning subset (``metadata_file``), alpha mask, buckets
- ``kohya_metadata.json``  absolute image path → caption (our captions live in ``captions/``,
                           not beside the images, so the subset reads them from here)
- ``training_config.toml`` every training argument, from the same ``train`` settings

Resume: sd-scripts saves its accelerate state at every save epoch (``<name>-<epoch>-state/``),
every ``save_every_n_steps`` (``<name>-step<step>-state/``) and at the end (``<name>-state/``),
each with ``train_state.json`` (``current_step``). A re-run passes the newest complete state as
``--resume`` with ``skip_until_initial_step`` (the data order continues where it stopped instead
of repeating the cut epoch); a run with its end state and final LoRA is finished and is not
launched again; only the newest ``train.keep_states`` states stay on disk. ``kohya_run.json``
records what the states were trained with: other settings or data refuse to resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.config.schema import TrainSettings
from animlora.errors import BadInputError, StageError
from animlora.io.files import atomic_write_json, atomic_write_text
from animlora.training.inputs import TrainingDataset
from animlora.training.metadata import OPTIMIZERS, lr_scheduler_name, optimizer_kwargs
from animlora.training.sampling import SAMPLE_SAMPLER

# our sampler names → sd-scripts' --sample_sampler names (same diffusers scheduler class)
SAMPLERS = {"euler": "euler", "euler_a": "euler_a", "ddim": "ddim", "pndm": "pndm", "dpm++": "dpmsolver++"}
STATE_FILES = ("train_state.json", "optimizer.bin", "random_states_0.pkl")  # what a complete state holds
RUN_FILE = "kohya_run.json"


@dataclass(frozen=True)
class KohyaState:
    folder: Path
    step: int
    epoch: int


@dataclass(frozen=True)
class KohyaJob:
    command: tuple[str, ...]
    cwd: Path
    dataset_toml: Path
    config_toml: Path
    resume_from: KohyaState | None = None
    finished: bool = False  # end state and final LoRA are there: nothing to launch
    run_dir: Path | None = None
    output_name: str = ""
    keep_states: int = 0


# -- resume ---------------------------------------------------------------------------------
def kohya_states(run_dir: Path, output_name: str) -> list[KohyaState]:
    """Every complete sd-scripts state of ``output_name`` in ``run_dir``, oldest step first.
    A folder a kill cut short (no optimizer or RNG file yet) is not complete."""
    pattern = re.compile(rf"^{re.escape(output_name)}(-\d{{6}}|-step\d{{8}})?-state$")
    out = []
    for folder in Path(run_dir).glob(f"{output_name}*-state"):
        if not (folder.is_dir() and pattern.match(folder.name)) or not all((folder / f).is_file() for f in STATE_FILES):
            continue
        try:
            info = json.loads((folder / "train_state.json").read_text(encoding="utf-8"))
            out.append(KohyaState(folder, int(info["current_step"]), int(info.get("current_epoch", 0))))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: not a state to resume from
    return sorted(out, key=lambda st: (st.step, st.folder.name))


def newest_state(run_dir: Path, output_name: str) -> KohyaState | None:
    """The complete state with the highest step (None: nothing to resume from)."""
    states = kohya_states(run_dir, output_name)
    return states[-1] if states else None


def resume_arguments(state: KohyaState | None) -> dict[str, Any]:
    """The sd-scripts arguments that continue from ``state`` at exactly its step."""
    if state is None:
        return {}
    return {"resume": str(state.folder), "skip_until_initial_step": True}


def prune_states(run_dir: Path, output_name: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete states, and cut-short state folders older
    than the newest complete one; return what was deleted."""
    states = kohya_states(run_dir, output_name)
    drop = [st.folder for st in states[:-keep]] if keep > 0 else []
    if states:
        complete = {st.folder for st in states}
        newest_mtime = states[-1].folder.stat().st_mtime
        for folder in Path(run_dir).glob(f"{output_name}*-state"):
            if folder.is_dir() and folder not in complete and folder.stat().st_mtime < newest_mtime:
                drop.append(folder)
    for folder in drop:
        shutil.rmtree(folder, ignore_errors=True)
    return drop


def _run_identity(config: dict[str, Any], dataset_hash: str) -> dict[str, Any]:
    """What decides the trained weights (not where samples go, not the resume arguments)."""
    skip = {"resume", "skip_until_initial_step", "sample_every_n_epochs", "sample_prompts", "sample_sampler",
            "save_last_n_epochs_state", "save_last_n_steps_state", "save_precision", "logging_dir", "log_with",
            "output_dir", "dataset_config", "training_comment"}
    return {"dataset_hash": dataset_hash, "config": {k: v for k, v in sorted(config.items()) if k not in skip}}


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
    output_name: str, sample_prompts: list[Any] | None = None, resume: KohyaState | None = None,
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
            "caption_tag_dropout_rate": 0.0,
            "flip_aug": s.flip_aug,
            "color_aug": s.color_aug,
            "random_crop": False,  # the built-in trainer centre-crops
        },
        "datasets": [{
            "resolution": s.resolution,
            "batch_size": s.batch_size,
            "enable_bucket": s.enable_buckets,
            "bucket_no_upscale": False,  # the built-in trainer resizes every image to cover its bucket
            "min_bucket_reso": s.min_bucket,
            "max_bucket_reso": s.max_bucket,
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
    if sample_prompts is None:
        from animlora.training.sampling import load_prompts

        sample_prompts = list(load_prompts(s.sample_prompts or None, data.trigger).prompts)
    lines = []
    for p in sample_prompts:  # the built-in trainer's samples: every prompt × sample seed, its negative
        text, negative = (p, "") if isinstance(p, str) else (p.prompt, p.negative)
        for sample_seed in s.sample_seeds:
            line = f"{text} --w {s.resolution} --h {s.resolution} --d {sample_seed} --s {s.sample_steps} --l {s.sample_cfg}"
            lines.append(line + (f" --n {negative}" if negative else "") + "\n")
    prompts_txt = atomic_write_text(run_dir / "sample_prompts.txt", "".join(lines))
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
        "learning_rate": s.unet_lr,
        "unet_lr": s.unet_lr,
        "optimizer_type": OPTIMIZERS[s.optimizer][0],
        "optimizer_args": [f"{k}={v}" for k, v in optimizer_kwargs(s).items()],
        "lr_scheduler": lr_scheduler_name(s),
        "lr_warmup_steps": s.lr_warmup_steps,
        "max_train_epochs": s.epochs,
        "save_every_n_epochs": s.save_every_n_epochs,
        "save_state": True,
        "save_last_n_epochs_state": s.keep_states,
        "mixed_precision": s.mixed_precision,
        "max_grad_norm": s.max_grad_norm,
        "noise_offset": s.noise_offset,
        "cache_latents": s.cache_latents,
        "gradient_checkpointing": s.gradient_checkpointing,
        "seed": seed,
        "sdpa": True,
        "training_comment": f"trigger: {data.trigger}",
    }
    if s.tensorboard:
        config.update(logging_dir=str(run_dir / "logs"), log_with="tensorboard")
    if s.save_state_every_n_steps:  # sd-scripts saves a LoRA file with each of these states too
        config.update(save_every_n_steps=s.save_state_every_n_steps,
                      save_last_n_steps_state=s.save_state_every_n_steps * s.keep_states)
    if s.train_text_encoder:
        config["text_encoder_lr"] = s.text_encoder_lr
    if s.lr_scheduler == "cosine_with_restarts":
        config["lr_scheduler_num_cycles"] = s.lr_restarts
    if s.min_snr_gamma:
        config["min_snr_gamma"] = s.min_snr_gamma
    if s.sample_every_n_epochs:
        config.update(sample_every_n_epochs=s.sample_every_n_epochs, sample_prompts=str(prompts_txt),
                      sample_sampler=SAMPLERS[SAMPLE_SAMPLER])
    if family == "sdxl":
        config["cache_text_encoder_outputs"] = False
    config.update(resume_arguments(resume))
    config_toml = atomic_write_text(run_dir / "training_config.toml", to_toml(config))
    return dataset_toml, config_toml


def _optimizer_arg(item: str) -> tuple[str, Any]:
    """``"key=value"`` as sd-scripts reads it (``ast.literal_eval`` of the value)."""
    import ast

    key, value = item.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def kohya_recipe(run_dir: Path) -> dict[str, Any]:
    """What sd-scripts will do, read back from the files written into ``run_dir``, in the
    engine-neutral shape of ``LoraTrainer.recipe`` (tests compare the two field by field)."""
    import tomllib

    run_dir = Path(run_dir)
    config = tomllib.loads((run_dir / "training_config.toml").read_text(encoding="utf-8"))
    dataset = tomllib.loads(Path(config["dataset_config"]).read_text(encoding="utf-8"))
    general, (group,) = dataset["general"], dataset["datasets"]
    (subset,) = group["subsets"]
    samples = []
    if config.get("sample_prompts"):
        for line in Path(config["sample_prompts"]).read_text(encoding="utf-8").splitlines():
            text, *options = line.split(" --")
            opts = dict(o.split(" ", 1) for o in options)
            samples.append({"prompt": text, "negative": opts.get("n", ""), "seed": int(opts["d"]),
                            "steps": int(opts["s"]), "cfg": float(opts["l"]), "size": [int(opts["w"]), int(opts["h"])]})
    sampler = {v: k for k, v in SAMPLERS.items()}.get(config.get("sample_sampler", ""))
    return {
        "network_dim": config["network_dim"], "network_alpha": float(config["network_alpha"]),
        "train_text_encoder": not config["network_train_unet_only"],
        "optimizer": config["optimizer_type"],
        "optimizer_args": dict(_optimizer_arg(item) for item in config.get("optimizer_args", [])),
        "unet_lr": config["unet_lr"], "text_encoder_lr": config.get("text_encoder_lr"),
        "lr_scheduler": config["lr_scheduler"], "lr_warmup_steps": config["lr_warmup_steps"],
        "lr_cycles": config.get("lr_scheduler_num_cycles", 1), "max_grad_norm": config["max_grad_norm"],
        "epochs": config["max_train_epochs"], "batch_size": group["batch_size"], "repeats": subset["num_repeats"],
        "min_snr_gamma": config.get("min_snr_gamma", 0), "noise_offset": config["noise_offset"],
        "resolution": group["resolution"], "enable_buckets": group["enable_bucket"],
        "min_bucket": group["min_bucket_reso"], "max_bucket": group["max_bucket_reso"],
        "bucket_step": group["bucket_reso_steps"], "bucket_upscale": not group["bucket_no_upscale"],
        "random_crop": general["random_crop"], "shuffle_caption": general["shuffle_caption"],
        "keep_tokens": general["keep_tokens"], "caption_dropout": general["caption_dropout_rate"],
        "caption_tag_dropout": general["caption_tag_dropout_rate"], "flip_aug": general["flip_aug"],
        "color_aug": general["color_aug"], "alpha_mask": subset["alpha_mask"],
        "captions": json.loads(Path(subset["metadata_file"]).read_text(encoding="utf-8")),
        "cache_latents": config["cache_latents"], "gradient_checkpointing": config["gradient_checkpointing"],
        "mixed_precision": config["mixed_precision"], "seed": config["seed"],
        "save_every_n_epochs": config["save_every_n_epochs"],
        "save_precision": {"float": "fp32"}.get(config["save_precision"], config["save_precision"]),
        "sample_every_n_epochs": config.get("sample_every_n_epochs", 0), "sample_sampler": sampler, "samples": samples,
    }


def prepare_kohya(
    settings: TrainSettings, data: TrainingDataset, run_dir: Path, *, base_model: str, family: str, seed: int,
    output_name: str, sample_prompts: list[Any] | None = None, fresh: bool = False,
) -> KohyaJob:
    """Check the checkout, write the TOMLs (resuming from the newest state unless ``fresh``),
    return the command (not run yet). ``sample_prompts``: None = ``train.sample_prompts``."""
    import tomllib

    root = check_checkout(settings.sd_scripts, family)
    run_dir = Path(run_dir)
    if fresh:  # start over: only the states sd-scripts wrote for this output name
        for folder in run_dir.glob(f"{output_name}*-state"):
            shutil.rmtree(folder, ignore_errors=True)
        (run_dir / RUN_FILE).unlink(missing_ok=True)
    states = kohya_states(run_dir, output_name)
    end = [st for st in states if st.folder.name == f"{output_name}-state"]
    # the end state is written just before the final LoRA: both there = finished; the end state
    # alone (killed in between) cannot be resumed (sd-scripts refuses initial step = last step)
    finished = bool(end) and (run_dir / f"{output_name}.safetensors").is_file()
    candidates = [st for st in states if st not in end]
    state = None if finished or not candidates else candidates[-1]
    dataset_toml, config_toml = write_kohya_files(
        settings, data, run_dir, base_model=base_model, family=family, seed=seed, output_name=output_name,
        sample_prompts=sample_prompts, resume=state,
    )
    identity = _run_identity(tomllib.loads(config_toml.read_text(encoding="utf-8")), data.content_hash)
    run_file = run_dir / RUN_FILE
    if states and run_file.is_file() and \
            json.loads(run_file.read_text(encoding="utf-8")) != json.loads(json.dumps(identity)):
        raise StageError(f"{run_dir}: holds an sd-scripts run with other settings or data; pass --force "
                         "to start over (its states are deleted) or choose another output folder")
    atomic_write_json(run_file, identity)
    script = root / ("sdxl_train_network.py" if family == "sdxl" else "train_network.py")
    # train.num_processes > 1: data-parallel, one process per GPU (sd-scripts' batch is per process)
    parallel = (("--multi_gpu", "--num_processes", str(settings.num_processes))
                if settings.num_processes > 1 else ())
    command = (*accelerate_command(root), "launch", *parallel, "--num_cpu_threads_per_process", "1", str(script),
               "--config_file", str(config_toml))
    if command[1:3] == ("-m", "accelerate.commands.launch"):
        command = tuple(c for i, c in enumerate(command) if not (i == 3 and c == "launch"))
    return KohyaJob(command, root, dataset_toml, config_toml, resume_from=state, finished=finished,
                    run_dir=run_dir, output_name=output_name, keep_states=settings.keep_states)


def launch(job: KohyaJob) -> int:
    """Run sd-scripts in the foreground (its own progress output); return its exit code.
    A finished run is not launched again (0). Old states are pruned before and after."""
    import subprocess

    if job.finished:
        return 0
    if job.run_dir is not None and job.keep_states:
        prune_states(job.run_dir, job.output_name, job.keep_states)
    try:
        code = subprocess.call(list(job.command), cwd=str(job.cwd))
    except OSError as exc:
        raise BadInputError(job.command[0], f"cannot start accelerate ({exc.strerror}); "
                            "install it in the sd-scripts environment") from exc
    if job.run_dir is not None and job.keep_states:
        prune_states(job.run_dir, job.output_name, job.keep_states)
    return code
