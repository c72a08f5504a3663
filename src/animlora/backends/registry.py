"""Every model backend of every family, in one table of one shape.

A family (``segmentation``, ``embedding``, ``captioning``, ``inpainting``, ``enhance``) is a protocol in
``backends/<family>/base.py`` and one module per backend. This table lists each backend by
module path, so nothing heavy is imported until one is used:

- :func:`available` — which backends of a family can run here, built from what imports
  (without importing it);
- :func:`get_backend` — build one; an unknown or unavailable backend is one error naming
  the choices, or the ``pip install 'animlora[extra]'`` line that fixes it;
- :func:`fallback_chain` — the configured backend, then the lighter ones its entry declares
  (tried in order when the stage's settings allow a fallback; the stage reports the switch);
  :func:`fallback_for` its first step. Every stage's ``fallback`` setting has one form:
  ``none`` | ``auto`` (the declared list) | a backend name;
- :func:`held` — one loaded model per process: a stage keeps its model here rather than on
  itself, so a process-pool worker loads it once for all its items (see
  ``Stage.setup_worker``), and a new key (other backend or settings) replaces it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TypeVar

from animlora.errors import ConfigError, MissingDependencyError

FAMILIES = ("segmentation", "embedding", "captioning", "inpainting", "enhance")


@dataclass(frozen=True)
class BackendEntry:
    """One backend: where its class is, what it needs, and where to go when it cannot run."""

    target: str  # "module:Class"
    packages: tuple[str, ...]  # importable names it needs
    extra: str  # the pip extra that installs them
    description: str
    implemented: bool = True
    fallbacks: tuple[str, ...] = ()  # lighter backends of the family, in the order to try


def _seg(name: str, cls: str) -> str:
    return f"animlora.backends.segmentation.{name}:{cls}"


BACKENDS: dict[str, dict[str, BackendEntry]] = {
    "segmentation": {
        "isnet": BackendEntry(_seg("isnet", "IsnetSegmenter"), ("onnxruntime", "cv2"), "cpu",
                              "ISNet matting model (ONNX) on onnxruntime; CPU default", fallbacks=("classic",)),
        "classic": BackendEntry(_seg("classic", "ClassicSegmenter"), ("cv2",), "cpu",
                                "no weights: border-contrast saliency + shot background model + GrabCut"),
        "sam2": BackendEntry(_seg("sam2", "Sam2Segmenter"), ("torch", "transformers", "cv2"), "models",
                             "SAM 2.1 (transformers) prompted by character mattes, propagated through the shot; "
                             "GPU default", fallbacks=("isnet", "classic")),
        "yolo": BackendEntry(_seg("yolo", "YoloSegmenter"), ("ultralytics", "torch", "cv2"), "yolo",
                             "ultralytics YOLO-seg: detections of character classes (segment.yolo_classes), "
                             "soft masks, tracks", fallbacks=("classic",)),
    },
    "embedding": {
        "color": BackendEntry("animlora.backends.embedding.color:ColorEmbedder", ("cv2",), "cpu",
                              "CPU, no weights: colour and shape descriptors"),
        "clip": BackendEntry("animlora.backends.embedding.clip:ClipEmbedder", ("torch", "transformers"), "models",
                             "CLIP image embeddings", fallbacks=("color",)),
        "siglip": BackendEntry("animlora.backends.embedding.siglip:SiglipEmbedder", ("torch", "transformers"),
                               "models", "SigLIP image embeddings", fallbacks=("color",)),
        "dinov2": BackendEntry("animlora.backends.embedding.dinov2:Dinov2Embedder", ("torch", "transformers"),
                               "models", "DINOv2 image embeddings", fallbacks=("color",)),
    },
    "captioning": {
        "template": BackendEntry("animlora.backends.captioning.template:TemplateCaptioner", ("cv2",), "cpu",
                                 "CPU, no weights: framing, view, palette, lighting, background measured"),
        "blip": BackendEntry("animlora.backends.captioning.blip:BlipCaptioner", ("torch", "transformers"), "models",
                             "BLIP image captioning (plain sentence)", fallbacks=("template",)),
        "florence2": BackendEntry("animlora.backends.captioning.florence2:Florence2Captioner",
                                  ("torch", "transformers"), "models", "Florence-2 detailed caption",
                                  fallbacks=("template",)),
        "qwen2_5_vl": BackendEntry("animlora.backends.captioning.qwen2_5_vl:QwenVLCaptioner",
                                   ("torch", "transformers"), "models",
                                   "Qwen2.5-VL-Instruct, schema-guided JSON fields", fallbacks=("template",)),
    },
    "inpainting": {
        "lama": BackendEntry("animlora.backends.inpainting.lama:LamaInpainter", ("torch", "spandrel"), "models",
                             "LaMa (big-lama weights) through spandrel", fallbacks=("opencv",)),
        "opencv": BackendEntry("animlora.backends.inpainting.opencv:OpenCVInpainter", ("cv2",), "cpu",
                               "OpenCV Telea / Navier-Stokes, no weights"),
        "sd": BackendEntry("animlora.backends.inpainting.sd:SDInpainter", ("torch", "diffusers", "transformers"),
                           "models", "Stable Diffusion inpainting (diffusers), text-guided; occluder removal only",
                           fallbacks=("lama", "opencv")),
    },
    "enhance": {
        "spandrel": BackendEntry("animlora.backends.enhancement.spandrel_sr:SpandrelEnhancer", ("torch", "spandrel"),
                                 "models", "super-resolution model (Real-ESRGAN, Compact, SwinIR, DAT, HAT ...) "
                                 "through spandrel; tiles, fp16 on CUDA", fallbacks=("opencv",)),
        "opencv": BackendEntry("animlora.backends.enhancement.opencv:OpenCVEnhancer", ("cv2",), "cpu",
                               "no weights: light denoise, CLAHE on luminance, edge-aware upscaling"),
    },
}


def _table(family: str) -> dict[str, BackendEntry]:
    table = BACKENDS.get(family)
    if table is None:
        raise ConfigError(f"unknown backend family {family!r}; families: {', '.join(FAMILIES)}")
    return table


def available(family: str) -> dict[str, bool]:
    """Which backends of ``family`` can run here, from what imports (without importing it)."""
    return {
        name: entry.implemented and all(importlib.util.find_spec(pkg) is not None for pkg in entry.packages)
        for name, entry in _table(family).items()
    }


def entry_of(family: str, name: str) -> BackendEntry:
    """The table entry; an unknown or unimplemented name is a ConfigError naming the choices."""
    table = _table(family)
    entry = table.get(name)
    if entry is None:
        raise ConfigError(f"unknown {family} backend {name!r}; choices: {', '.join(table)}")
    if not entry.implemented:
        working = ", ".join(n for n, e in table.items() if e.implemented)
        raise ConfigError(f"{family} backend {name!r} is not implemented in this version; use one of: {working}")
    return entry


def check_packages(family: str, name: str) -> BackendEntry:
    """The entry, after checking its packages import; a missing one names the pip extra."""
    entry = entry_of(family, name)
    for pkg in entry.packages:
        if importlib.util.find_spec(pkg) is None:
            raise MissingDependencyError(pkg, entry.extra, f"{family} backend '{name}'")
    return entry


def get_backend(family: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Build backend ``name`` of ``family`` (its class called with ``args``/``kwargs``)."""
    entry = check_packages(family, name)
    module, _, cls = entry.target.partition(":")
    return getattr(import_module(module), cls)(*args, **kwargs)


def fallback_chain(family: str, name: str, allowed: bool | str | tuple[str, ...] | list[str] = True) -> list[str]:
    """``name``, then the fallbacks to try when it cannot run.

    ``allowed`` is a stage's fallback setting (the one form: ``"none"``, ``"auto"`` = the
    entry's declared list, or a backend name = the declared list from that name on), also as
    the booleans of earlier releases (``False`` none, ``True`` auto) or a list of names."""
    declared = list(entry_of(family, name).fallbacks)
    if allowed is False or allowed in ("none", "", None):
        return [name]
    if allowed is True or allowed == "auto":
        return [name, *declared]
    wanted = [allowed] if isinstance(allowed, str) else list(allowed)
    for other in wanted:
        entry_of(family, other)
    if len(wanted) == 1 and wanted[0] in declared:
        return [name, *declared[declared.index(wanted[0]):]]
    return [name, *(n for n in wanted if n != name)]


def fallback_for(family: str, name: str, allowed: bool | str) -> str | None:
    """The backend to use when ``name`` cannot run, as the fallback setting ``allowed``
    (none | auto | a backend name) says; None: none (the error stands)."""
    chain = fallback_chain(family, name, allowed)
    return chain[1] if len(chain) > 1 else None


# -- one loaded model per process -----------------------------------------------------------
T = TypeVar("T")
_HELD: dict[str, tuple[Hashable, Any]] = {}


def held(slot: str, key: Hashable, build: Callable[[], T]) -> T:
    """The model in ``slot`` if it was built for ``key``, else ``build()`` (the old one closed).

    Process-wide: with the process executor each worker keeps its own, so it loads a model
    once and reuses it for every item it is given."""
    current = _HELD.get(slot)
    if current is not None and current[0] == key:
        return current[1]
    if current is not None:
        release(slot)
    model = build()
    _HELD[slot] = (key, model)
    return model


def release(slot: str) -> None:
    """Close and forget the model in ``slot`` (frees GPU memory)."""
    current = _HELD.pop(slot, None)
    if current is None:
        return
    value = current[1]
    for part in value if isinstance(value, tuple) else (value,):  # (model, note) pairs too
        close = getattr(part, "close", None)
        if callable(close):
            close()
