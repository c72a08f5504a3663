"""ISNet / U²-Net-class matting model (ONNX): the CPU default.

The model maps an RGB image resized to its input size (1024²) to a soft foreground matte.
Instances are the matte's connected components (touching characters split, see
``instances.split_matte``); tracks link them across the shot's frames.

Engines (``segment.isnet_runtime``): OpenVINO on the CPU when it is installed (it is in the
base install), onnxruntime otherwise and on CUDA. Speed, compared with a plain per-image
onnxruntime session (rembg):

- OpenVINO computes in bfloat16 on CPUs that do so natively (AMX, AVX512-BF16), a 3-4x
  gain on such a CPU at mask IoU > 0.99 to float32; ``segment.isnet_precision: f32`` turns
  it off. Elsewhere it computes in float32.
- several frames are in flight at once (``segment.cpu_streams``), each with its share of
  the cores: a 1024² conv net does not scale over many cores within one image;
- onnxruntime runs a float32 copy of the fp16 graph (no casts, fast kernels) and batches
  frames when the model allows a dynamic batch;
- resizing is OpenCV's (area / linear) instead of PIL's Lanczos, and normalisation is one
  float32 expression;
- OpenVINO compiles only the first output (the matte): the side mattes and decoder features
  the exported graph also returns are never computed (docs/segmentation.md, "Cost").
"""

from __future__ import annotations

import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.segmentation.base import Frames, Instance, Segmenter, run_in_batches
from animlora.backends.segmentation.instances import add_coarse, graft_edge_parts, link_tracks, split_matte
from animlora.errors import BadInputError, MissingDependencyError

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
    """The bare model: RGB frames in, soft mattes (float32 HxW, frame size) out.

    ``runtime`` picks the engine on the CPU: ``openvino`` (``auto`` when it is installed) or
    ``onnxruntime``; CUDA always goes through onnxruntime's CUDA provider. ``precision``
    ``auto`` lets OpenVINO compute in bfloat16 where the CPU does so natively (AMX /
    AVX512-BF16), ``f32`` keeps float32 everywhere."""

    def __init__(
        self,
        onnx_path: Path,
        device: str = "cpu",
        streams: int = 0,
        size: int = 0,
        runtime: str = "auto",
        precision: str = "auto",
    ) -> None:
        import onnxruntime as ort

        from animlora.backends.segmentation.isnet_graph import derived_copy, inspect

        shape, fp16 = inspect(onnx_path)
        if len(shape) != 4:
            raise BadInputError(onnx_path, f"expected an image model with input [N, 3, H, W], got {shape}")
        native = (
            int(shape[2]) if isinstance(shape[2], int) else 1024,
            int(shape[3]) if isinstance(shape[3], int) else 1024,
        )
        self.size = (size, size) if size else native
        flexible = bool(size) and (size, size) != native and all(isinstance(d, int) for d in shape[2:])
        cuda = device in ("cuda", "auto") and "CUDAExecutionProvider" in ort.get_available_providers()
        if runtime == "auto":
            runtime = "openvino" if not cuda and importlib.util.find_spec("openvino") else "onnxruntime"
        if runtime == "openvino":
            if importlib.util.find_spec("openvino") is None:
                raise MissingDependencyError("openvino", "cpu", "segment.isnet_runtime 'openvino'")
            # OpenVINO reads the fp16 weights itself and computes in f32 or bf16
            self.path = derived_copy(onnx_path, to_fp32=False, flexible=flexible)
            self.engine: _Engine = _OpenVinoEngine(self.path, onnx_path, streams, precision)
        else:
            # on a CPU, fp16 weights cost casts and slow kernels: run a float32 copy
            self.path = derived_copy(onnx_path, to_fp32=fp16 and not cuda, flexible=flexible)
            self.engine = _OrtEngine(self.path, onnx_path, streams, cuda)

    @property
    def describe(self) -> str:
        """Which engine runs the model, how, at what size (for reports)."""
        return f"{self.engine.describe}, {self.size[1]}x{self.size[0]}"

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = self.size
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if image.shape[0] > h else cv2.INTER_LINEAR)
        # channel by channel into a planar (3, H, W) array, in place: the same float32 values
        # as (x / 255 - MEAN) / STD on the interleaved image, ~6x less CPU (no temporaries)
        out = np.empty((3, h, w), np.float32)
        for c, plane in enumerate(cv2.split(small)):
            np.multiply(plane, np.float32(1.0 / 255.0), out=out[c])
            np.subtract(out[c], MEAN[c], out=out[c])
            np.divide(out[c], STD[c], out=out[c])
        return out

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        raw = self.engine.run([self.preprocess(im)[None] for im in images])
        return [self.postprocess(r[0], im) for r, im in zip(raw, images, strict=True)]

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


class _Engine:
    """Runs the graph on preprocessed [1, 3, H, W] inputs; returns each one's first output."""

    describe: str

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class _OrtEngine(_Engine):
    def __init__(self, path: Path, source: Path, streams: int, cuda: bool) -> None:
        import onnxruntime as ort

        cores = len(os.sched_getaffinity(0))
        # concurrent runs of one session, each with its share of the cores; 0 = up to 4.
        # One 1024² image does not keep many cores busy (the threads wait on each other):
        # 2 streams x 1 thread used 2.98 CPU-s per image where 1 x 2 threads used 4.1.
        self.streams = 1 if cuda else max(1, streams or min(4, cores))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, cores // self.streams)
        providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BadInputError(source, f"onnxruntime cannot load this model ({exc})") from exc
        meta = self.session.get_inputs()[0]
        self.input_name = meta.name
        self.dynamic_batch = not isinstance(meta.shape[0], int)
        where = "CUDA" if cuda else f"CPU, {self.streams} stream(s) x {options.intra_op_num_threads} thread(s)"
        self.describe = f"onnxruntime {ort.__version__} float32 ({where})"

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self.dynamic_batch and len(inputs) > 1:
            return list(self.session.run(None, {self.input_name: np.concatenate(inputs)})[0][:, None])
        if self.streams == 1 or len(inputs) == 1:
            return [self._one(x) for x in inputs]
        # onnxruntime releases the GIL while it runs: threads overlap whole images
        with ThreadPoolExecutor(self.streams) as pool:
            return list(pool.map(self._one, inputs))

    def _one(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class _OpenVinoEngine(_Engine):
    """OpenVINO's CPU plugin in throughput mode: ``streams`` requests in flight (0 = its own
    choice for the cores), each image one request."""

    def __init__(self, path: Path, source: Path, streams: int, precision: str) -> None:
        import openvino as ov

        config: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT"}
        if streams:
            config["NUM_STREAMS"] = streams
        if precision == "f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            core = ov.Core()
            model = core.read_model(str(path))
            # only the first output (the fused matte) is read: ISNet graphs also export the
            # five side outputs (each a conv, a resize to the input size and a sigmoid) and
            # decoder features; without them as results OpenVINO drops that work (same matte)
            first = model.get_results()[0]
            model = ov.Model([first], model.get_parameters(), model.get_friendly_name())
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own text
            raise BadInputError(source, f"OpenVINO cannot load this model ({str(exc).splitlines()[0]})") from exc
        self.streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16 / f32
        self.queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self.describe = f"openvino {ov.__version__.split('-')[0]} {self.precision} (CPU, {self.streams} stream(s))"

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(inputs)

        def done(request: Any, index: int) -> None:
            out[index] = request.get_output_tensor(0).data.copy()

        self.queue.set_callback(done)
        for index, x in enumerate(inputs):
            self.queue.start_async({0: x}, index)
        self.queue.wait_all()
        return out  # type: ignore[return-value]


class IsnetSegmenter(Segmenter):
    name = "isnet"
    models = ("isnet",)

    def __init__(self, settings: Any, models: Any, onnx_path: Path | None = None) -> None:
        super().__init__(settings, models)
        if onnx_path is None:
            from animlora.models import resolve

            onnx_path = find_onnx(resolve("isnet", models))
        self.model = IsnetMatte(onnx_path, device=settings.device, streams=settings.cpu_streams,
                                size=settings.isnet_size, runtime=settings.isnet_runtime,
                                precision=settings.isnet_precision)
        # second looks at smaller sides (off at 0; one model when the sides agree): characters the
        # fine look misses, and the body the frame's edge cuts off a close-up (docs/segmentation.md)
        self.looks = {size: IsnetMatte(onnx_path, device=settings.device, streams=settings.cpu_streams, size=size,
                                       runtime=settings.isnet_runtime, precision=settings.isnet_precision)
                      for size in {settings.isnet_coarse_size, settings.isnet_edge_size} - {0}}

    def describe(self) -> str:
        return f"isnet on {self.model.describe}"

    def segment(self, frames: Frames) -> list[Instance]:
        s = self.settings
        instances: list[Instance] = []

        def run(indices: list[int]) -> list[list[Instance]]:
            images = [frames[i] for i in indices]
            mattes = self.model.predict(images)
            looked = {size: look.predict(images) for size, look in self.looks.items()}
            coarse, edge = looked.get(s.isnet_coarse_size), looked.get(s.isnet_edge_size)
            if coarse is not None:
                mattes = [add_coarse(m, c, s.alpha_threshold) for m, c in zip(mattes, coarse, strict=True)]
            found = [split_matte(m, i, s.alpha_threshold, s.min_area_fraction, s.split_overlaps)
                     for i, m in zip(indices, mattes, strict=True)]
            if edge is not None:
                found = [graft_edge_parts(f, m, e, s.alpha_threshold, s.min_area_fraction)
                         for f, m, e in zip(found, mattes, edge, strict=True)]
            return found

        for found in run_in_batches(run, list(range(len(frames))), s.batch_size):
            instances.extend(found)
        return link_tracks(instances, frames, s.track_similarity)
