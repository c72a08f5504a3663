"""Optical flow for temporally consistent fills: OpenCV DIS on the CPU, RAFT (torchvision)
where its weights are on disk.

``flow(a, b)`` gives, for every pixel of ``a``, its displacement to where it is in ``b``
(HxWx2 float32, x then y): ``b`` sampled at ``grid + flow`` is ``a`` moved back into
``a``'s place (cv2.remap). Heavy imports stay inside the classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from animlora.errors import BadInputError, MissingDependencyError

RAFT_MULTIPLE = 8  # RAFT's feature maps are 1/8 of the image: both sides padded to a multiple
RAFT_MIN_SIDE = 128  # ... and its correlation pyramid needs 16 cells a side
# DIS runs at (at most) this long side, the flow enlarged back; 0 = full size (default: at 640
# px a 1280x720 pair costs ~1/4 of the CPU, but benchmarks/flicker.py --size 1280x720 showed
# 28% more flicker, 0.632 vs 0.495, so the plates keep full-size flow)
DIS_MAX_SIDE = 0


class FlowEstimator(ABC):
    name: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @abstractmethod
    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a``, ``b`` HxWx3 uint8 RGB of one size -> HxWx2 float32 displacement of a's pixels."""


class DISFlow(FlowEstimator):
    """OpenCV's Dense Inverse Search (Kroeger et al. 2016): fast, no weights, CPU.

    With ``max_side`` (0 = full size, the default), frames whose long side is over it are
    reduced to it first and the flow is enlarged back (its vectors scaled): ~1/4 of the CPU
    for a 1280x720 pair at 640 px, at some flicker (``DIS_MAX_SIDE``)."""

    name = "dis"

    def __init__(self, preset: str = "medium", max_side: int = DIS_MAX_SIDE) -> None:
        import cv2

        presets = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                   "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}
        self._dis = cv2.DISOpticalFlow_create(presets[preset])
        self.max_side = max_side

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cv2

        ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
        height, width = ga.shape
        side = max(height, width)
        if not self.max_side or side <= self.max_side:
            return self._dis.calc(ga, gb, None).astype(np.float32)
        f = self.max_side / side
        size = (max(1, round(width * f)), max(1, round(height * f)))
        sa, sb = (cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in (ga, gb))
        small = self._dis.calc(sa, sb, None).astype(np.float32)
        full = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        full[..., 0] *= width / size[0]
        full[..., 1] *= height / size[1]
        return full


class RAFTFlow(FlowEstimator):
    """RAFT (Teed & Deng 2020) from torchvision. ``weights``: a state dict file of
    torchvision's ``raft_small`` or ``raft_large`` (the variant is read from its keys);
    ``model``: an already built module (tests build ``raft_small(weights=None)``)."""

    name = "raft"

    def __init__(self, weights: str | Path | None = None, *, model: Any = None, device: str = "auto",
                 iterations: int = 12) -> None:
        try:
            import torch
            from torchvision.models.optical_flow import raft_large, raft_small
        except ImportError as exc:  # pragma: no cover - torch is a base dependency of the model extras
            raise MissingDependencyError("torchvision", "models", "inpaint.flow: raft") from exc
        if model is None:
            if not weights or not Path(weights).is_file():
                raise BadInputError(Path(str(weights or "?")), "RAFT weights not found (inpaint.raft_weights)")
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            # raft_small's encoders are bottleneck blocks (convnormrelu3); raft_large's are not
            large = not any(".convnormrelu3." in k for k in state)
            model = (raft_large if large else raft_small)(weights=None)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise BadInputError(Path(str(weights)), f"not a torchvision RAFT state dict ({exc})") from exc
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if cuda else "cpu")
        self.model = model.to(self.device).eval()
        self.iterations = iterations

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        height, width = a.shape[:2]
        ph = max(RAFT_MIN_SIDE - height, (-height) % RAFT_MULTIPLE)
        pw = max(RAFT_MIN_SIDE - width, (-width) % RAFT_MULTIPLE)

        def tensor(x: np.ndarray) -> Any:
            # a read-only array (a frame read from a file) is copied: torch warns when it wraps one
            t = torch.as_tensor(x if x.flags.writeable else x.copy()).to(self.device)
            t = t.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # RAFT wants [-1, 1]
            return F.pad(t, (0, pw, 0, ph), mode="replicate")

        with torch.inference_mode():
            out = self.model(tensor(a), tensor(b), num_flow_updates=self.iterations)[-1]
        return out[0, :, :height, :width].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def open_flow(settings: Any) -> tuple[FlowEstimator, str | None]:
    """The estimator ``inpaint.flow`` names, and a note when RAFT was asked for but DIS ran.

    ``auto``: RAFT when ``inpaint.raft_weights`` is a file and a GPU is there (RAFT on a CPU
    is slow, DIS is not), else DIS, without a note. ``raft``: RAFT, or DIS with a note when
    its weights are missing and ``inpaint.fallback`` is not none (RAFT's weights are not
    downloaded by animlora)."""
    s = settings.inpaint
    if s.flow == "auto":
        weights = bool(s.raft_weights) and Path(s.raft_weights).is_file()
        if weights and s.device != "cpu" and _cuda():
            return RAFTFlow(s.raft_weights, device=s.device), None
        return DISFlow(), None
    if s.flow == "raft":
        try:
            return RAFTFlow(s.raft_weights or None, device=s.device), None
        except (BadInputError, MissingDependencyError) as exc:
            if s.fallback == "none":
                raise
            return DISFlow(), f"flow 'raft' unavailable ({exc}); used 'dis' because inpaint.fallback is {s.fallback}"
    return DISFlow(), None


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
