"""One LoRA from one dataset folder, with the engine ``train.engine`` names.

``builtin`` is the diffusers+peft trainer (:mod:`animlora.training.trainer`); ``kohya``
writes sd-scripts' TOML files and launches its ``train_network.py``
(:mod:`animlora.training.sd_scripts`). The train stage and ``animlora train`` both call
:func:`check` (validation and the plan, nothing written) and :func:`train` (the run), so a
run inside ``animlora run`` and a standalone ``animlora train`` do the same thing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animlora.errors import AnimloraError, ConfigError, StageError, require_packages

if TYPE_CHECKING:
    from animlora.config import Settings

ENGINES = ("builtin", "kohya")
#: why ``--engine kohya`` refuses Flux (docs/training.md, "kohya engine")
KOHYA_FLUX = ("train.engine = kohya does not train Flux.1: sd-scripts' flux_train_network.py takes the "
              "transformer, CLIP-L, T5-XXL and AE as separate BFL files and other arguments, which animlora "
              "does not write; train Flux with the built-in engine (--engine builtin)")
StepCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class EngineRun:
    """What one training run left in its folder, and a summary for reports and ``--json``."""

    engine: str
    output_dir: Path
    final: Path | None
    checkpoints: tuple[Path, ...]
    files: tuple[Path, ...]  # every file the run wrote (absolute), for the stage's output list
    summary: dict[str, Any] = field(default_factory=dict)


def train_command(dataset: str, base_model: str = "", preset: str = "") -> str:
    """The exact command line that trains ``dataset`` (printed by ``animlora run``)."""
    parts = ["animlora", "train", "--dataset", dataset, "--base-model", base_model or "BASE_MODEL"]
    if preset:
        parts += ["--preset", preset]
    return " ".join(shlex.quote(p) if p != "BASE_MODEL" else p for p in parts)


def check(settings: Settings, dataset: Path) -> dict[str, Any]:
    """Validate the dataset, the base model and the engine; return the plan (nothing written)."""
    s = settings.train
    if not s.base_model:
        raise AnimloraError("no base model: pass --base-model PATH|ID or set train.base_model")
    if s.engine == "kohya":
        family, base = _kohya_base(settings)
        from animlora.training.inputs import load_dataset
        from animlora.training.sd_scripts import check_checkout

        data = load_dataset(dataset, s.trigger)
        check_checkout(s.sd_scripts, family)
        return {"engine": "kohya", "images": len(data.items), "family": family, "base_model": base}
    trainer = _builtin(settings)
    _, _, plan = trainer.check_inputs(dataset, s.base_model)
    return {"engine": "builtin", **asdict(plan), "describe": plan.describe()}


def train(settings: Settings, dataset: Path, output_dir: Path, *, fresh: bool = False,
          on_step: StepCallback | None = None) -> EngineRun:
    """Train a LoRA from ``dataset`` into ``output_dir`` with the configured engine.

    ``fresh`` starts over instead of resuming a run cut short (both engines)."""
    if settings.train.engine == "kohya":
        return _train_kohya(settings, dataset, output_dir, fresh=fresh)
    trainer = _builtin(settings, on_step)
    before = _files(output_dir)
    if settings.train.num_processes > 1:
        result = _launch_builtin(settings, dataset, output_dir, fresh=fresh)
    else:
        result = trainer.train(dataset, output_dir, settings.train.base_model, fresh=fresh)
    summary = {
        "engine": "builtin", "output": str(output_dir), "final": str(result.final) if result.final else None,
        "checkpoints": [str(p) for p in result.checkpoints], "steps": result.steps,
        "resumed_from_step": result.resumed_from, "epoch_loss": result.epoch_losses,
        "seconds": round(result.seconds, 2),
    }
    written = tuple(sorted((_files(output_dir) - before) | {p for p in [*result.checkpoints, result.final] if p}))
    return EngineRun("builtin", output_dir, result.final, tuple(result.checkpoints), written, summary)


# -- builtin ------------------------------------------------------------------------------
#: what the built-in trainer and the evaluation import (all in ``pip install 'animlora[train]'``)
TRAIN_PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface_hub")


def _builtin(settings: Settings, on_step: StepCallback | None = None) -> Any:
    require_packages(TRAIN_PACKAGES, "train", "LoRA training (train.engine 'builtin')")
    from animlora.training.trainer import LoraTrainer

    return LoraTrainer(settings.train, settings.models, seed=settings.project.seed, on_step=on_step)


def launch_command(num_processes: int, port: int) -> list[str]:
    """``accelerate launch`` for ``num_processes`` local processes: torchrun underneath, one
    process per GPU (without a GPU the trainer's Accelerator runs them on the CPU with gloo).
    The precision is the trainer's own (its Accelerator is given it)."""
    import sys

    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
            str(num_processes), "--num_machines", "1", "--main_process_port", str(port),
            "--mixed_precision", "no", "--dynamo_backend", "no", "--module", "animlora.training.launched"]


def _launch_builtin(settings: Settings, dataset: Path, output_dir: Path, *, fresh: bool) -> Any:
    """The built-in trainer under ``accelerate launch`` (see :mod:`animlora.training.launched`)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import tempfile

    from animlora.training.trainer import TrainResult

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cpu = not _has_cuda()
    with tempfile.TemporaryDirectory(prefix="animlora-launch-") as tmp:
        settings_file, result_file = Path(tmp) / "settings.json", Path(tmp) / "result.json"
        settings_file.write_text(json.dumps(settings.model_dump(mode="json")), encoding="utf-8")
        command = [*launch_command(settings.train.num_processes, port), str(settings_file),
                   str(Path(dataset).resolve()), str(Path(output_dir).resolve()), str(result_file),
                   *(["--fresh"] if fresh else [])]
        package_root = str(Path(__file__).resolve().parents[2])  # this animlora, a checkout too
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                           if p)}
        env["ANIMLORA_LAUNCHER_PID"] = str(os.getpid())  # the ranks end with this process
        if cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        import logging

        logging.getLogger("animlora").info("train: %s", " ".join(command))
        code = subprocess.call(command, env=env, stdout=sys.stderr)
        outcome = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else {}
    if code or "error" in outcome or not outcome:
        raise StageError(outcome.get("error") or f"accelerate launch exited with code {code}: {' '.join(command)}")
    return TrainResult(Path(output_dir), Path(outcome["final"]) if outcome["final"] else None,
                       [Path(p) for p in outcome["checkpoints"]], outcome["steps"], outcome["resumed_from"],
                       losses=outcome["losses"], epoch_losses={int(k): v for k, v in outcome["epoch_losses"].items()},
                       seconds=outcome["seconds"])


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


# -- kohya --------------------------------------------------------------------------------
def _kohya_base(settings: Settings) -> tuple[str, str]:
    """(family, base model as sd-scripts is given it): a local model is checked against
    ``train.family``; a hub id with a set family goes to sd-scripts, which downloads it."""
    from animlora.training.base_model import check_family, locate_base_model

    s = settings.train
    try:
        ref = locate_base_model(s.base_model, settings.models)
        check_family(ref, s.family)
        family, base = ref.family, str(ref.path or ref.given)
    except AnimloraError:
        if s.family == "auto":
            raise
        family, base = s.family, s.base_model
    if family == "flux":
        raise ConfigError(KOHYA_FLUX)
    return family, base


def prepare_kohya(settings: Settings, dataset: Path, output_dir: Path, *, fresh: bool = False) -> Any:
    """Write sd-scripts' dataset and training TOML files into ``output_dir`` (resuming from the
    newest saved state unless ``fresh``); return the job. The sample prompts, negatives included,
    come from ``train.sample_prompts``."""
    from animlora.training.inputs import load_dataset
    from animlora.training.sd_scripts import prepare_kohya as write_job

    s = settings.train
    data = load_dataset(dataset, s.trigger)
    family, base = _kohya_base(settings)
    return write_job(s, data, output_dir, base_model=base, family=family, seed=settings.project.seed,
                     output_name=s.output_name or data.name, fresh=fresh)


def _train_kohya(settings: Settings, dataset: Path, output_dir: Path, *, fresh: bool = False) -> EngineRun:
    import logging

    from animlora.training.sd_scripts import launch

    before = _files(output_dir)
    job = prepare_kohya(settings, dataset, output_dir, fresh=fresh)
    logging.getLogger("animlora").info("sd-scripts: %s", " ".join(job.command))
    code = launch(job)
    if code:
        raise StageError(f"sd-scripts exited with code {code}: {' '.join(job.command)}")
    written = tuple(sorted(_files(output_dir) - before | {Path(job.dataset_toml), Path(job.config_toml)}))
    checkpoints = tuple(sorted(output_dir.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors")))
    finals = sorted(p for p in output_dir.glob("*.safetensors") if p not in checkpoints)
    summary = {"engine": "kohya", "output": str(output_dir), "command": list(job.command),
               "dataset_config": str(job.dataset_toml), "training_config": str(job.config_toml), "returncode": code}
    return EngineRun("kohya", output_dir, finals[-1] if finals else None, checkpoints, written, summary)
