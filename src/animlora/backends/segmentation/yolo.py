"""ultralytics YOLO-seg: characters by class (optional extra ``animlora[yolo]``).

A COCO-trained YOLO segmentation model finds people and animals; 3D characters are often
animals or toys, so ``segment.yolo_classes`` (COCO names by default: person, cat, dog, …,
teddy bear) says which classes count as characters. Per frame:

1. the model runs on the frame (class-agnostic NMS, so one object is one detection even
   when two classes compete for it);
2. detections of a character class with confidence ≥ ``segment.yolo_confidence`` are kept;
3. each one's soft mask is the *sigmoid of its mask logits* (prototypes × coefficients)
   upsampled to the frame, before ultralytics' own ``> 0`` binarisation, so edges stay
   anti-aliased; it is cut to the detection box (grown a little, as ultralytics crops);
4. the score is the detection confidence; tracks link the instances of the shot's frames
   with the shared shape/colour/position linker (``instances.link_tracks``), which needs no
   extra packages (ultralytics' own trackers pull ``lap`` and more).

Weights come only through ``animlora.models.resolve`` (a ``.pt`` file, or a folder holding
one). ultralytics is told never to go online: ``YOLO_OFFLINE`` and ``YOLO_AUTOINSTALL``
are set before it is imported (it checks connectivity and may pip-install at import/run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.segmentation.base import Frames, Instance, Segmenter, run_in_batches
from animlora.backends.segmentation.instances import link_tracks, split_matte
from animlora.errors import BadInputError, ConfigError

# ultralytics reads these once, when its utils module is imported: set them first.
_OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_VERBOSE": "0"}
# more characters than this in one frame is a crowd, not a character shot
MAX_DETECTIONS = 50


def import_ultralytics() -> Any:
    """ultralytics with downloads, auto-installs and online checks off."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    from PIL import Image

    pil_open = Image.open
    import ultralytics
    import ultralytics.utils.patches  # noqa: F401 - applies its patches now, so they can be undone

    # ultralytics replaces PIL.Image.open process-wide with one that, on an unreadable file,
    # tries to pip-install pi-heif: every other stage's "corrupt image" handling would then see
    # an ImportError. The backend reads frames as arrays, so PIL's own open is put back.
    Image.open = pil_open
    return ultralytics


def find_weights(path: Path) -> Path:
    """The .pt file of a resolved model location (a file, or a folder holding one)."""
    if path.is_file():
        return path
    files = sorted(path.rglob("*.pt"))
    if not files:
        raise BadInputError(path, "no .pt file in this model folder")
    return files[0]


def _np(value: Any) -> np.ndarray:
    """A torch tensor (any device) or array as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def class_ids(names: dict[int, str], wanted: list[str]) -> set[int]:
    """The model's class ids for the configured class names; empty = every class."""
    if not wanted:
        return set(names)
    by_name = {name.lower(): k for k, name in names.items()}
    unknown = [w for w in wanted if w.lower() not in by_name]
    if len(unknown) == len(wanted):
        raise ConfigError(
            f"segment.yolo_classes: none of {wanted} is a class of this model; "
            f"its classes: {', '.join(names[k] for k in sorted(names))}"
        )
    # some names missing is normal for a custom model trained on fewer classes
    return {by_name[w.lower()] for w in wanted if w.lower() in by_name}


def soft_mask(logits: np.ndarray, input_shape: tuple[int, int], frame_shape: tuple[int, int],
              box: np.ndarray) -> np.ndarray:
    """One detection's mask logits (prototype grid of the letterboxed input) → float32
    probability matte at frame size, zero outside its box grown by a few pixels."""
    import cv2

    ih, iw = input_shape
    oh, ow = frame_shape
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float32), -30, 30)))
    prob = cv2.resize(prob, (iw, ih), interpolation=cv2.INTER_LINEAR)
    # undo the letterbox (same arithmetic as ultralytics' scale_boxes)
    gain = min(ih / oh, iw / ow)
    new_h, new_w = max(round(oh * gain), 1), max(round(ow * gain), 1)
    top, left = round((ih - new_h) / 2 - 0.1), round((iw - new_w) / 2 - 0.1)
    prob = prob[top : top + new_h, left : left + new_w]
    prob = cv2.resize(prob, (ow, oh), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    grow = max(2.0, 0.02 * max(x1 - x0, y1 - y0))  # keep the anti-aliased rim
    xa, ya = max(0, int(np.floor(x0 - grow))), max(0, int(np.floor(y0 - grow)))
    xb, yb = min(ow, int(np.ceil(x1 + grow))), min(oh, int(np.ceil(y1 + grow)))
    out = np.zeros((oh, ow), np.float32)
    out[ya:yb, xa:xb] = prob[ya:yb, xa:xb]
    return np.clip(out, 0.0, 1.0)


def instances_from_result(result: Any, frame: int, wanted: set[int], settings: Any) -> list[Instance]:
    """Character instances of one frame from a result carrying ``boxes`` (xyxy, conf, cls
    in frame pixels), ``orig_shape``, ``mask_logits`` (N×h×w) and ``input_shape``."""
    boxes = result.boxes
    if boxes is None or len(_np(boxes.conf)) == 0:
        return []
    xyxy, conf, cls = _np(boxes.xyxy), _np(boxes.conf), _np(boxes.cls).astype(int)
    logits = _np(result.mask_logits)
    frame_shape = (int(result.orig_shape[0]), int(result.orig_shape[1]))
    found = []
    for k in range(len(conf)):
        if int(cls[k]) not in wanted or float(conf[k]) < settings.yolo_confidence:
            continue
        matte = soft_mask(logits[k], tuple(result.input_shape), frame_shape, xyxy[k])
        parts = split_matte(matte, frame, settings.alpha_threshold, settings.min_area_fraction, split_overlaps=False)
        if not parts:
            continue
        # one detection = one instance: its largest part (masks may leave stray specks)
        part = max(parts, key=lambda p: float((p.alpha >= settings.alpha_threshold).sum()))
        found.append(Instance(frame, part.bbox, part.alpha, float(np.clip(conf[k], 0.0, 1.0))))
    return found


def _predictor_class() -> type:
    """A SegmentationPredictor that keeps each detection's mask logits (ultralytics'
    Results only hold masks binarised at logit 0)."""
    import_ultralytics()
    from ultralytics.engine.results import Results
    from ultralytics.models.yolo.segment import SegmentationPredictor
    from ultralytics.utils import ops

    class SoftMaskPredictor(SegmentationPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):  # noqa: ANN001, ANN202
            c, mh, mw = proto.shape
            logits = (pred[:, 6:] @ proto.float().view(c, -1)).view(-1, mh, mw)
            boxes = pred[:, :6].clone()
            boxes[:, :4] = ops.scale_boxes(img.shape[2:], boxes[:, :4], orig_img.shape)
            result = Results(orig_img, path=img_path, names=self.model.names, boxes=boxes)
            result.mask_logits = logits.cpu().numpy()
            result.input_shape = tuple(int(v) for v in img.shape[2:])
            return result

    return SoftMaskPredictor


class YoloSegmenter(Segmenter):
    name = "yolo"

    def __init__(self, settings: Any, models: Any, *, weights: Path | None = None) -> None:
        super().__init__(settings, models)
        if weights is None:
            from animlora.models import resolve

            weights = find_weights(resolve(settings.yolo_model, models))
        ultralytics = import_ultralytics()
        try:
            self.model = ultralytics.YOLO(str(weights), task="segment")
        except Exception as exc:  # torch/ultralytics raise many types for a bad file
            raise BadInputError(weights, f"ultralytics cannot load this YOLO model ({exc})") from exc
        if getattr(self.model, "task", "segment") != "segment":
            raise BadInputError(weights, f"not a segmentation model (task {self.model.task!r}); use a *-seg model")
        self.wanted = class_ids(dict(self.model.names), list(settings.yolo_classes))
        self.device = _device(settings.device)
        self.predictor = _predictor_class()

    def _predict(self, images: list[np.ndarray]) -> list[Any]:
        # ultralytics takes OpenCV's BGR order; our frames are RGB
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]
        return self.model.predict(
            bgr, predictor=self.predictor, imgsz=self.settings.yolo_size, conf=self.settings.yolo_confidence,
            agnostic_nms=True, max_det=MAX_DETECTIONS, device=self.device, verbose=False, save=False,
        )

    def segment(self, frames: Frames) -> list[Instance]:
        def run(indices: list[int]) -> list[list[Instance]]:
            results = self._predict([frames[i] for i in indices])
            return [instances_from_result(r, i, self.wanted, self.settings)
                    for i, r in zip(indices, results, strict=True)]

        instances: list[Instance] = []
        for found in run_in_batches(run, list(range(len(frames))), self.settings.batch_size):
            instances.extend(found)
        return link_tracks(instances, frames, self.settings.track_similarity)

    def close(self) -> None:
        import torch

        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _device(setting: str) -> str:
    import torch

    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return "cuda:0"
    return "cpu"
