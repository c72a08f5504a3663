"""The yolo backend: a tiny random YOLO-seg built from ultralytics' bundled config runs the
real code path; the post-processing (class filter, soft masks, tracks) is checked exactly
on a stand-in for ultralytics' result object."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None:
    # find_spec, not importorskip: importing ultralytics before the backend sets YOLO_OFFLINE
    # would let it probe the network
    pytest.skip("the yolo backend needs `pip install 'animlora[yolo]'` (ultralytics, torch)", allow_module_level=True)

from animlora.backends.segmentation.base import Frames, get_segmenter  # noqa: E402
from animlora.backends.segmentation.yolo import (  # noqa: E402
    class_ids,
    import_ultralytics,
    instances_from_result,
    soft_mask,
)
from animlora.config import load_settings  # noqa: E402
from animlora.errors import ConfigError  # noqa: E402
from segment_synth import scene  # noqa: E402

COCO_HEAD = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
             "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog"]


def settings(**segment):
    base = {"device": "cpu", "min_area_fraction": 0.0, "batch_size": 2}
    return load_settings(overrides={"segment": {**base, **segment}}).settings


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A YOLOv8n-seg with random weights (fixed seed) from the yaml ultralytics ships: no
    download. Class names are COCO's, as in the released weights."""
    import torch

    ultralytics = import_ultralytics()
    torch.manual_seed(0)
    model = ultralytics.YOLO("yolov8n-seg.yaml", task="segment")
    names = {k: (COCO_HEAD[k] if k < len(COCO_HEAD) else f"class{k}") for k in range(len(model.names))}
    model.model.names = names
    path = tmp_path_factory.mktemp("yolo") / "tiny-seg.pt"
    model.save(str(path))
    return path


def frames():
    return [scene(i, [((80 + 8 * i, 90), (30, 45), (220, 90, 60))])[0] for i in range(3)]


def test_tiny_random_yolo_runs_through_the_registry_path(tiny_weights):
    # every class and no confidence floor: the random model's detections all pass
    s = settings(yolo_model="yolo11n-seg", yolo_classes=[], yolo_confidence=0.0, yolo_size=160)
    s.models.paths["yolo11n-seg"] = str(tiny_weights)
    segmenter = get_segmenter("yolo", s.segment, s.models)
    assert type(segmenter).__name__ == "YoloSegmenter"
    instances = segmenter.segment(Frames.of_arrays(frames()))
    assert instances, "the random model with confidence 0 should return detections"
    for inst in instances:
        x, y, w, h = inst.bbox
        assert inst.frame in (0, 1, 2)
        assert inst.alpha.dtype == np.float32 and inst.alpha.shape == (h, w)
        assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 180
        assert 0.0 <= inst.score <= 1.0
        assert float(inst.alpha.min()) >= 0.0 and float(inst.alpha.max()) <= 1.0
        assert isinstance(inst.track, int) and inst.track >= 0
    # default character classes on the same model: a subset (only person/bird/cat/dog ids)
    s2 = settings(yolo_model="yolo11n-seg", yolo_confidence=0.0, yolo_size=160)
    s2.models.paths["yolo11n-seg"] = str(tiny_weights)
    segmenter2 = get_segmenter("yolo", s2.segment, s2.models)
    assert segmenter2.wanted == {0, 14, 15, 16}
    segmenter2.segment(Frames.of_arrays(frames()[:1]))
    segmenter.close()


def test_class_names_map_to_ids_and_unknown_sets_are_an_error():
    names = {0: "person", 1: "car", 2: "teddy bear"}
    assert class_ids(names, ["person", "Teddy Bear", "zebra"]) == {0, 2}
    assert class_ids(names, []) == {0, 1, 2}
    with pytest.raises(ConfigError, match="its classes: person, car, teddy bear"):
        class_ids(names, ["zebra"])


def _logits_for(mask: np.ndarray, scale: int = 4) -> np.ndarray:
    """Prototype-grid logits (1/scale of the input) whose sigmoid is ~1 inside ``mask``."""
    import cv2

    small = cv2.resize(mask.astype(np.float32), (mask.shape[1] // scale, mask.shape[0] // scale),
                       interpolation=cv2.INTER_AREA)
    return (small - 0.5) * 20.0


def test_soft_mask_undoes_the_letterbox_and_keeps_soft_edges():
    # frame 180x320 letterboxed into 192x320 (pad 6 px top and bottom); a disc at (100, 90)
    frame_shape, input_shape = (180, 320), (192, 320)
    yy, xx = np.mgrid[0:192, 0:320]
    disc = ((xx - 100) ** 2 + (yy - (90 + 6)) ** 2) <= 40**2
    matte = soft_mask(_logits_for(disc), input_shape, frame_shape, np.array([60, 50, 140, 130], np.float32))
    assert matte.shape == frame_shape and matte.dtype == np.float32
    fy, fx = np.mgrid[0:180, 0:320]
    truth = ((fx - 100) ** 2 + (fy - 90) ** 2) <= 40**2
    binary = matte >= 0.5
    iou = (binary & truth).sum() / (binary | truth).sum()
    assert iou > 0.93
    edge = (matte > 0.05) & (matte < 0.95)
    assert edge.sum() > 50  # anti-aliased rim, not a hard 0/1 mask
    # nothing far outside the (slightly grown) box
    assert matte[:, 150:].max() == 0.0 and matte[:40].max() == 0.0


def test_post_processing_filters_classes_and_confidence_and_tracks_link():
    s = settings(yolo_classes=["person", "dog"], yolo_confidence=0.3).segment
    names = {0: "person", 1: "car", 2: "dog"}
    wanted = class_ids(names, list(s.yolo_classes))
    imgs = frames()
    results = []
    for i in range(3):
        yy, xx = np.mgrid[0:180, 0:320]
        body = (((xx - (80 + 8 * i)) / 30.0) ** 2 + ((yy - 90) / 45.0) ** 2) <= 1.0
        car = (np.abs(xx - 250) < 30) & (np.abs(yy - 90) < 20)
        logits = np.stack([_logits_for(body), _logits_for(car), _logits_for(body)])
        box_body = [80 + 8 * i - 30, 45, 80 + 8 * i + 30, 135]
        results.append(SimpleNamespace(
            boxes=SimpleNamespace(
                xyxy=np.array([box_body, [220, 70, 280, 110], box_body], np.float32),
                # person 0.9, a car (not a character) 0.95, a dog below the confidence floor
                conf=np.array([0.9, 0.95, 0.1], np.float32),
                cls=np.array([0, 1, 2], np.float32),
            ),
            orig_shape=(180, 320), input_shape=(180, 320), mask_logits=logits,
        ))
    found = [inst for i, r in enumerate(results) for inst in instances_from_result(r, i, wanted, s)]
    assert [inst.frame for inst in found] == [0, 1, 2]
    assert [inst.score for inst in found] == pytest.approx([0.9, 0.9, 0.9])
    for i, inst in enumerate(found):
        x, y, w, h = inst.bbox
        assert abs(x + w / 2 - (80 + 8 * i)) <= 2 and abs(y + h / 2 - 90) <= 2
        assert 0.0 < float(inst.alpha[inst.alpha > 0].min()) < 0.5  # soft rim kept

    from animlora.backends.segmentation.instances import link_tracks

    linked = link_tracks(found, imgs, s.track_similarity)
    assert [inst.track for inst in linked] == [0, 0, 0]
    # an empty frame is no instances, not an error
    empty = SimpleNamespace(boxes=SimpleNamespace(xyxy=np.zeros((0, 4)), conf=np.zeros(0), cls=np.zeros(0)),
                            orig_shape=(180, 320), input_shape=(192, 320), mask_logits=np.zeros((0, 48, 80)))
    assert instances_from_result(empty, 0, wanted, s) == []


def test_imported_weights_run_the_segment_command_without_fallback(tiny_weights, tmp_path):
    """`models import` puts the .pt in the store; `segment --model yolo --no-fallback` finds
    it there and writes the output contract."""
    import json

    from typer.testing import CliRunner

    from animlora.cli import app
    from animlora.io.images import write_image

    runner = CliRunner()
    result = runner.invoke(app, ["models", "import", "yolo11n-seg", str(tiny_weights), "--json"])
    assert result.exit_code == 0, result.output
    for i, image in enumerate(frames()):
        write_image(tmp_path / "frames" / "shot1" / f"f{i}.png", image)
    seg = tmp_path / "seg"
    result = runner.invoke(app, [
        "segment", "--input-dir", str(tmp_path / "frames"), "--output-dir", str(seg), "--model", "yolo",
        "--no-fallback", "--set", "segment.yolo_confidence=0", "--set", "segment.yolo_classes=[person]",
        "--set", "segment.yolo_size=160", "--set", "segment.min_area_fraction=0", "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((seg / "segmentation_results.json").read_text())
    assert report["counts"]["instances"] == len(list((seg / "masks").glob("*.png")))
    assert len(list((seg / "background").glob("*.png"))) == 3
    assert report["backends_used"] == {"yolo": 3}  # the yolo backend, every frame
    assert report["counts"]["instances"] > 0  # the random model with confidence 0 finds "persons"


def test_importing_ultralytics_leaves_corrupt_image_errors_intact(tmp_path):
    from animlora.errors import BadInputError
    from animlora.io.images import read_image_info

    import_ultralytics()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(BadInputError, match="not an image"):
        read_image_info(bad)
