"""Resume state: everything needed to continue a run exactly where it stopped, without pickle.

A state is a folder ``state/step_<N>/``:

- ``weights.safetensors``    every LoRA tensor (U-Net and text encoders), by parameter name
- ``optimizer.safetensors``  the optimizer's per-parameter tensors (``state.<index>.<name>``)
- ``state.json``             step, epoch, the optimizer's scalars and param groups, the LR
                             scheduler's and grad scaler's state, torch's CPU RNG state (hex),
                             and the settings/dataset fingerprints the run was started with

It is written into a temp folder and renamed, then ``state/latest.json`` is atomically
replaced to point at it: a kill at any moment leaves the previous state intact. Every
random choice of a step is keyed by (seed, step) (see ``dataset.step_rng``), so the step
number is the data-order/noise RNG state; torch's global RNG is saved too for anything else.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.errors import AnimloraError, BadInputError
from animlora.io.files import atomic_write_bytes, atomic_write_json

LATEST = "latest.json"
KEEP = 2  # states kept on disk (the newest ones) unless the caller says otherwise (train.keep_states)


@dataclass(frozen=True)
class SavedState:
    folder: Path
    step: int
    info: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise TypeError(f"cannot store {type(value).__name__} in resume state")


def split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors for safetensors, JSON rest) of a torch optimizer ``state_dict``."""
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = _jsonable(value)
    return tensors, {"scalars": scalars, "param_groups": _jsonable(state_dict["param_groups"])}


def join_optimizer_state(tensors: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in rest["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_state(
    root: Path,
    step: int,
    *,
    weights: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    info: dict[str, Any],
    keep: int = KEEP,
) -> Path:
    """Write ``root/step_<step>/`` atomically, point ``latest.json`` at it, drop old states."""
    import torch
    from safetensors.torch import save

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    if (final / "state.json").is_file():  # this step is saved already (epoch end = step interval)
        atomic_write_json(root / LATEST, {"folder": final.name, "step": step})
        return final
    tmp = root / f".tmp-step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    opt_tensors, opt_rest = split_optimizer_state(optimizer.state_dict())
    body = dict(info)
    body.update(
        step=step,
        optimizer=opt_rest,
        scheduler=_jsonable(scheduler.state_dict()),
        scaler=_jsonable(scaler.state_dict()) if scaler is not None else None,
        torch_rng=torch.get_rng_state().numpy().tobytes().hex(),
    )
    try:
        atomic_write_bytes(tmp / "weights.safetensors",
                           save({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}))
        atomic_write_bytes(tmp / "optimizer.safetensors", save(opt_tensors))
        atomic_write_json(tmp / "state.json", body)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete folder (no state.json) only
        tmp.rename(final)
    except (AnimloraError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AnimloraError(f"{root}: cannot save the resume state ({exc}); free disk space and resume") from exc
    atomic_write_json(root / LATEST, {"folder": final.name, "step": step})
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_state(root: Path) -> SavedState | None:
    """The newest complete state, or None when the run never saved one."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        folder = root / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
        info = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise BadInputError(pointer, f"resume state is unreadable ({exc}); delete {root} to start over") from exc
    return SavedState(folder, int(info["step"]), info)


def load_state(saved: SavedState, *, weights: dict[str, Any], optimizer: Any, scheduler: Any, scaler: Any) -> None:
    """Copy a saved state into live objects (weights in place, so optimizer references hold)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    stored = load_file(str(saved.folder / "weights.safetensors"))
    missing = sorted(set(weights) - set(stored))
    if missing:
        raise BadInputError(saved.folder, f"resume state lacks {len(missing)} LoRA weights (e.g. {missing[0]}); "
                            "the network settings changed — start over with --force")
    with torch.no_grad():
        for name, param in weights.items():
            param.copy_(stored[name].to(param.device, param.dtype))
    opt_tensors = load_file(str(saved.folder / "optimizer.safetensors"))
    optimizer.load_state_dict(join_optimizer_state(opt_tensors, saved.info["optimizer"]))
    scheduler.load_state_dict(saved.info["scheduler"])
    if scaler is not None and saved.info.get("scaler"):
        scaler.load_state_dict(saved.info["scaler"])
    rng = np.frombuffer(bytes.fromhex(saved.info["torch_rng"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(rng))
