"""The Segmenter protocol: the frames of one shot in, character instances with soft masks,
scores and track ids out.

A backend subclasses :class:`Segmenter` and implements one method, :meth:`Segmenter.segment`.
Backends are listed in the one backend table (:mod:`animlora.backends.registry`) by module
path, so nothing heavy is imported until one is used; :func:`availability` says which can run
here (from what imports), and :func:`get_segmenter` builds one or raises an error naming the
choices and the pip extra.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from animlora.backends import registry
from animlora.backends.registry import BackendEntry

if TYPE_CHECKING:
    from animlora.config.schema import ModelsSettings, SegmentSettings


@dataclass(frozen=True)
class Instance:
    """One character in one frame.

    ``alpha`` is the soft matte (float32 in [0, 1]) cropped to ``bbox`` = (x, y, w, h) in
    frame pixels; ``track`` numbers the instances of one character within the shot (0, 1, …).
    ``blob`` (>= 0) is shared by the parts that :func:`~.instances.split_matte` cut out of one
    connected blob of the matte (so the shot pass can put them back together when the video
    does not show them apart); -1 for an instance that was not split. ``kept`` (bool, the
    size of ``alpha``) marks pixels a second look joined to the instance (a body the frame's
    edge cuts, :func:`~.instances.graft_edge_parts`): the shot pass does not cut them off."""

    frame: int  # index into the shot's frames
    bbox: tuple[int, int, int, int]
    alpha: np.ndarray
    score: float  # backend confidence that this is a character, 0..1
    track: int = -1
    blob: int = -1
    kept: np.ndarray | None = None

    def full_alpha(self, height: int, width: int) -> np.ndarray:
        """The matte pasted into an empty frame-sized array."""
        out = np.zeros((height, width), np.float32)
        x, y, w, h = self.bbox
        out[y : y + h, x : x + w] = self.alpha
        return out


class Frames(Sequence[np.ndarray]):
    """The frames of one shot, loaded on access (RGB uint8 HxWx3), so a long shot is never
    held in memory all at once."""

    def __init__(self, loaders: Sequence[Callable[[], np.ndarray]]) -> None:
        self._loaders = list(loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._loaders[i]() for i in range(*index.indices(len(self)))]
        return self._loaders[index]()

    @classmethod
    def of_arrays(cls, arrays: Sequence[np.ndarray]) -> Frames:
        return cls([lambda a=a: a for a in arrays])


class Segmenter(ABC):
    """Base of every segmentation backend."""

    name: ClassVar[str]
    # weights this backend resolves through animlora.models (registry names)
    models: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: SegmentSettings, models: ModelsSettings) -> None:
        self.settings = settings
        self.models_settings = models
        # what fell back inside the backend (sam2's prompter), for the report; None: nothing
        self.fallback_note: str | None = None

    @property
    def recorded_as(self) -> str:
        """The name a shot's rows record as the backend that made its masks: :attr:`name`, or
        more where part of the backend fell back (``sam2+classic``: sam2 prompted by classic
        instead of ISNet), so a run that can do better redoes them (stages/fallback.py)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def describe(self) -> str:
        """How this backend runs (engine, precision, size) for reports; a backend with
        choices of its own says more than its name."""
        return self.name

    @abstractmethod
    def segment(self, frames: Frames) -> list[Instance]:
        """Every character instance in the shot's frames, with track ids linking the
        instances of one character across frames."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory); the default has nothing to free."""


# The family's part of the one backend table (backends/registry.py); the old names stay.
BACKENDS: dict[str, BackendEntry] = registry.BACKENDS["segmentation"]


def availability() -> dict[str, bool]:
    """Which backends can run here, from what imports (without importing it)."""
    return registry.available("segmentation")


def get_segmenter(name: str, settings: SegmentSettings, models: ModelsSettings) -> Segmenter:
    """Build a backend; unknown or uninstalled backends are one error naming the fix."""
    return registry.get_backend("segmentation", name, settings, models)


# -- batching ---------------------------------------------------------------------------
T = TypeVar("T")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or an onnxruntime/CUDA allocation failure."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate memory" in text


def run_in_batches(
    fn: Callable[[list[T]], list[R]], items: Sequence[T], batch_size: int,
    on_shrink: Callable[[int], None] | None = None,
) -> list[R]:
    """``fn`` over ``items`` in batches; on out-of-memory the batch size halves and the
    failed batch is retried (down to 1, where the error is raised)."""
    out: list[R] = []
    size = max(1, batch_size)
    start = 0
    while start < len(items):
        batch = list(items[start : start + size])
        try:
            out.extend(fn(batch))
        except Exception as exc:
            if not is_out_of_memory(exc) or size == 1:
                raise
            size = max(1, size // 2)
            _empty_cuda_cache()
            if on_shrink is not None:
                on_shrink(size)
            continue
        start += len(batch)
    return out


def _empty_cuda_cache() -> None:
    import sys

    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
