"""Find model weights: a configured local path → animlora's model store → the Hugging Face
cache → the hub (skipped when offline). The first hit wins; nothing found is one error."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from animlora.config.schema import ModelsSettings
from animlora.errors import AnimloraError, BadInputError, ModelNotFoundError
from animlora.io.files import file_sha256
from animlora.models.registry import ModelSpec, get_spec


@dataclass(frozen=True)
class ModelLocation:
    name: str
    path: Path | None  # None: not present locally
    source: str  # "models.paths", "store", "hf-cache", "hub", or "" when absent
    looked: tuple[str, ...]


def store_dir(settings: ModelsSettings) -> Path:
    if settings.store:
        return Path(settings.store).expanduser()
    env = os.environ.get("ANIMLORA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "animlora" / "models"


def _offline(settings: ModelsSettings) -> bool:
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _hf_snapshot(spec: ModelSpec, *, local_only: bool) -> Path | None:
    if spec.hf_repo is None:
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        path = snapshot_download(
            spec.hf_repo,
            revision=spec.hf_revision,
            allow_patterns=list(spec.hf_files) or None,
            local_files_only=local_only,
        )
    except Exception:  # noqa: BLE001 - any hub/cache failure means "not here"
        return None
    return Path(path)


def _complete(folder: Path, spec: ModelSpec) -> bool:
    if not folder.exists():
        return False
    if folder.is_file():
        return True
    return all((folder / name).exists() for name in spec.sha256) and any(folder.iterdir())


def locate(name: str, settings: ModelsSettings, *, allow_download: bool = False) -> ModelLocation:
    """Where the model is, without raising: used by ``models list`` and ``doctor``."""
    spec = get_spec(name)
    looked: list[str] = []
    configured = settings.paths.get(name)
    if configured:
        path = Path(configured).expanduser()
        looked.append(f"models.paths.{name} = {path}")
        if path.exists():
            return ModelLocation(name, path, "models.paths", tuple(looked))
    stored = store_dir(settings) / name
    looked.append(str(stored))
    if _complete(stored, spec):
        return ModelLocation(name, stored, "store", tuple(looked))
    if spec.hf_repo:
        looked.append(f"Hugging Face cache ({spec.hf_repo})")
        path = _hf_snapshot(spec, local_only=True)
        if path is not None:
            return ModelLocation(name, path, "hf-cache", tuple(looked))
        if allow_download and not _offline(settings):
            looked.append(f"the hub ({spec.hf_repo})")
            path = _hf_snapshot(spec, local_only=False)
            if path is not None:
                return ModelLocation(name, path, "hub", tuple(looked))
        elif allow_download:
            looked.append("the hub: skipped, offline")
    return ModelLocation(name, None, "", tuple(looked))


def resolve(name: str, settings: ModelsSettings) -> Path:
    """The local path of a model's weights, downloading from the hub when allowed."""
    spec = get_spec(name)
    location = locate(name, settings, allow_download=True)
    if location.path is not None:
        return location.path
    configured = settings.paths.get(name)
    if configured and not Path(configured).expanduser().exists():
        raise BadInputError(configured, f"models.paths.{name} points to nothing; fix the path or remove it")
    raise ModelNotFoundError(
        name,
        list(location.looked),
        f"get it with `animlora models pull {name}`, or `animlora models import {name} PATH` "
        f"for weights you already have{_other_hint(spec)}",
    )


def _other_hint(spec: ModelSpec) -> str:
    return f" (sources: {spec.other_source_label})" if spec.other_source_label else ""


def verify(folder: Path, spec: ModelSpec) -> None:
    for rel, expected in spec.sha256.items():
        path = folder / rel
        if not path.is_file():
            raise BadInputError(path, f"missing file of model '{spec.name}'")
        actual = file_sha256(path)
        if actual != expected:
            raise BadInputError(path, f"checksum mismatch for model '{spec.name}' (sha256 {actual[:12]}…, expected {expected[:12]}…)")


def import_model(name: str, source: Path, settings: ModelsSettings) -> Path:
    """Copy weights the user already has into the store, checking sha256 where known."""
    spec = get_spec(name)
    source = Path(source).expanduser()
    if not source.exists():
        raise BadInputError(source, "no such file or folder")
    dest = store_dir(settings) / name
    tmp = dest.with_name(f".tmp-{name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    else:
        target_name = next(iter(spec.sha256), source.name)
        shutil.copy2(source, tmp / target_name)
    try:
        verify(tmp, spec)
    except AnimloraError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def pull(name: str, settings: ModelsSettings) -> ModelLocation:
    """Fetch into a local cache for offline use: the hub first, then the spec's other source."""
    spec = get_spec(name)
    location = locate(name, settings, allow_download=True)
    if location.path is not None:
        return location
    looked = list(location.looked)
    if spec.other_source:
        module, _, func = spec.other_source.partition(":")
        dest = store_dir(settings) / name
        looked.append(spec.other_source_label or spec.other_source)
        tmp = dest.with_name(f".tmp-{name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            getattr(import_module(module), func)(spec, tmp)
            verify(tmp, spec)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        return ModelLocation(name, dest, "store", tuple(looked))
    raise ModelNotFoundError(
        name, looked, f"download it elsewhere and run `animlora models import {name} PATH`"
    )
