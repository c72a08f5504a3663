"""ISNet / U²-Net-class matting model (ONNX) on onnxruntime: the CPU default.

The model maps an RGB image resized to its input size (1024²) to a soft foreground matte.
Instances are the matte's connected components (touching characters split, see
``instances.split_matte``); tracks link them across the shot's frames.

Speed, compared with a plain per-image session (rembg): several frames are in flight at
once (``segment.cpu_streams`` concurrent runs of one session, each with its share of the
cores: a 1024² conv net does not scale over many cores within one image), frames go
through in batches when the model allows a dynamic batch, resizing is OpenCV's (area /
linear) instead of PIL's Lanczos, and normalisation is one float32 expression.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.segmentation.base import Frames, Instance, Segmenter, run_in_batches
from animlora.backends.segmentation.instances import link_tracks, split_matte
from animlora.errors import BadInputError

# ISNet's training normalisation (as in DIS and rembg): (x/255 - 0.5) / 1.0
MEAN = np.array([0.5, 0.5, 0.5], np.float32)
STD = np.array([1.0, 1.0, 1.0], np.float32)


def find_onnx(path: Path) -> Path:
    """The .onnx file of a resolved model location (a file, or a folder holding one)."""
    if path.is_file():
        return path
    files = sorted(path.rglob("*.onnx"))
    if not files:
        raise BadInputError(path, "no .onnx file in this model folder")
    preferred = [f for f in files if f.name == "isnet.onnx"]
    return (preferred or files)[0]


class IsnetMatte:
    """The bare model: RGB frames in, soft mattes (float32 HxW, frame size) out."""

    def __init__(self, onnx_path: Path, device: str = "cpu", streams: int = 0, size: int = 0) -> None:
        import onnxruntime as ort

        cores = len(os.sched_getaffinity(0))
        # concurrent runs of one session, each with its share of the cores; 0 = up to 4.
        # One 1024² image does not keep many cores busy (the threads wait on each other):
        # 2 streams x 1 thread used 2.98 CPU-s per image where 1 x 2 threads used 4.1.
        self.streams = max(1, streams or min(4, cores))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, cores // self.streams)
        providers = ["CPUExecutionProvider"]
        if device in ("cuda", "auto") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        from animlora.backends.segmentation.isnet_graph import derived_copy, inspect

        shape, fp16 = inspect(onnx_path)
        if len(shape) != 4:
            raise BadInputError(onnx_path, f"expected an image model with input [N, 3, H, W], got {shape}")
        native = (
            int(shape[2]) if isinstance(shape[2], int) else 1024,
            int(shape[3]) if isinstance(shape[3], int) else 1024,
        )
        # on a CPU, fp16 weights cost casts and slow kernels: run a float32 copy
        to_fp32 = providers[0] == "CPUExecutionProvider" and fp16
        flexible = bool(size) and (size, size) != native and all(isinstance(d, int) for d in shape[2:])
        self.path = derived_copy(onnx_path, to_fp32=to_fp32, flexible=flexible)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BadInputError(onnx_path, f"onnxruntime cannot load this model ({exc})") from exc
        meta = self.session.get_inputs()[0]
        self.input_name = meta.name
        self.size = (size, size) if size else native
        self.dynamic_batch = not isinstance(meta.shape[0], int)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = self.size
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if image.shape[0] > h else cv2.INTER_LINEAR)
        x = small.astype(np.float32) * (1.0 / 255.0)
        x = (x - MEAN) / STD
        return x.transpose(2, 0, 1)

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if self.dynamic_batch and len(images) > 1:
            batch = np.stack([self.preprocess(im) for im in images])
            raw = self.session.run(None, {self.input_name: batch})[0]
            return [self.postprocess(r, im) for r, im in zip(raw, images, strict=True)]
        if self.streams == 1 or len(images) == 1:
            return [self._one(im) for im in images]
        # onnxruntime releases the GIL while it runs: threads overlap whole images
        with ThreadPoolExecutor(self.streams) as pool:
            return list(pool.map(self._one, images))

    def _one(self, image: np.ndarray) -> np.ndarray:
        raw = self.session.run(None, {self.input_name: self.preprocess(image)[None]})[0]
        return self.postprocess(raw[0], image)

    @staticmethod
    def postprocess(raw: np.ndarray, image: np.ndarray) -> np.ndarray:
        import cv2

        pred = raw[0].astype(np.float32)
        lo, hi = float(pred.min()), float(pred.max())
        # ISNet's output is a sigmoid; stretch it to [0, 1] only when it is clearly not
        # (an image without a character must stay near 0, not be amplified)
        if hi > 1.0 or lo < 0.0:
            pred = (pred - lo) / max(hi - lo, 1e-6)
        full = cv2.resize(pred, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        return np.clip(full, 0.0, 1.0)


class IsnetSegmenter(Segmenter):
    name = "isnet"
    models = ("isnet",)

    def __init__(self, settings: Any, models: Any, onnx_path: Path | None = None) -> None:
        super().__init__(settings, models)
        if onnx_path is None:
            from animlora.models import resolve

            onnx_path = find_onnx(resolve("isnet", models))
        self.model = IsnetMatte(onnx_path, device=settings.device, streams=settings.cpu_streams,
                                size=settings.isnet_size)

    def segment(self, frames: Frames) -> list[Instance]:
        s = self.settings
        instances: list[Instance] = []

        def run(indices: list[int]) -> list[list[Instance]]:
            images = [frames[i] for i in indices]
            mattes = self.model.predict(images)
            return [
                split_matte(m, i, s.alpha_threshold, s.min_area_fraction, s.split_overlaps)
                for i, m in zip(indices, mattes, strict=True)
            ]

        for found in run_in_batches(run, list(range(len(frames))), s.batch_size):
            instances.extend(found)
        return link_tracks(instances, frames, s.track_similarity)
