"""Segmentation backends on synthetic frames with known masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animlora.backends.segmentation.base import (
    BACKENDS,
    Frames,
    availability,
    get_segmenter,
    run_in_batches,
)
from animlora.config import load_settings
from animlora.errors import ConfigError
from segment_synth import iou, scene

RED, BLUE, PURPLE = (220, 90, 60), (60, 80, 210), (200, 60, 200)


def settings(**segment):
    return load_settings(overrides={"segment": segment} if segment else None).settings


def best_iou(inst, masks, shape):
    full = inst.full_alpha(*shape) >= 0.15
    return max(iou(full, m) for m in masks)


def test_classic_finds_each_shape_with_its_mask_and_one_track_per_shape():
    s = settings()
    frames, truths = [], []
    for i in range(3):
        image, masks = scene(i, [((80 + 10 * i, 100), (30, 45), RED), ((230 - 5 * i, 95), (35, 40), BLUE)])
        frames.append(image)
        truths.append(masks)
    instances = get_segmenter("classic", s.segment, s.models).segment(Frames.of_arrays(frames))
    assert [inst.frame for inst in instances] == [0, 0, 1, 1, 2, 2]
    for inst in instances:
        assert best_iou(inst, truths[inst.frame], (180, 320)) >= 0.9
        assert 0.5 <= inst.score <= 1.0
    # left shape is track 0 in every frame, right shape track 1
    assert [inst.track for inst in instances] == [0, 1, 0, 1, 0, 1]


def test_classic_single_frame_and_empty_frame():
    s = settings()
    image, masks = scene(9, [((160, 90), (40, 60), PURPLE)])
    empty, _ = scene(10, [])
    instances = get_segmenter("classic", s.segment, s.models).segment(Frames.of_arrays([image, empty]))
    assert [inst.frame for inst in instances] == [0]
    assert best_iou(instances[0], masks, (180, 320)) >= 0.9


def test_overlapping_characters_are_split_into_two_instances():
    s = settings()
    image, masks = scene(5, [((120, 95), (40, 55), RED), ((190, 95), (40, 55), (230, 100, 70))])
    instances = get_segmenter("classic", s.segment, s.models).segment(Frames.of_arrays([image]))
    assert len(instances) == 2
    for inst, truth in zip(instances, masks, strict=True):
        assert iou(inst.full_alpha(180, 320) >= 0.15, truth) >= 0.85
    no_split = get_segmenter("classic", settings(split_overlaps=False).segment, s.models)
    assert len(no_split.segment(Frames.of_arrays([image]))) == 1


def tiny_isnet(path: Path, size: int = 64) -> Path:
    """A 1x1-conv "matting model" in ISNet's interface (input [N,3,S,S] normalised as
    x/255-0.5, two [N,1,S,S] sigmoid outputs) that lights up red-dominant pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.array([20.0, -20.0, 0.0], np.float32).reshape(1, 3, 1, 1)
    bias = np.array([-4.0], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["output"]),
            helper.make_node("Identity", ["output"], ["side"]),
        ],
        "tiny_isnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, size, size]),
            helper.make_tensor_value_info("side", TensorProto.FLOAT, ["N", 1, size, size]),
        ],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_isnet_path_end_to_end_with_a_tiny_onnx_model(tmp_path, runtime):
    pytest.importorskip(runtime)
    from animlora.backends.segmentation.isnet import IsnetSegmenter

    s = settings(batch_size=2, isnet_size=0, isnet_runtime=runtime)
    model = tiny_isnet(tmp_path / "tiny.onnx", size=128)
    frames, truths = [], []
    for i in range(3):
        image, masks = scene(i, [((90 + 8 * i, 90), (40, 55), RED)])
        frames.append(image)
        truths.append(masks)
    segmenter = IsnetSegmenter(s.segment, s.models, onnx_path=model)
    assert segmenter.model.size == (128, 128)
    assert segmenter.model.describe.startswith(runtime) and segmenter.model.describe.endswith("128x128")
    instances = segmenter.segment(Frames.of_arrays(frames))
    assert [(inst.frame, inst.track) for inst in instances] == [(0, 0), (1, 0), (2, 0)]
    for inst in instances:
        assert best_iou(inst, truths[inst.frame], (180, 320)) >= 0.8
        # a soft matte: anti-aliased edge values survive
        assert ((inst.alpha > 0.2) & (inst.alpha < 0.8)).any()


def test_batches_halve_on_out_of_memory_and_finish():
    calls: list[int] = []

    class OutOfMemoryError(RuntimeError):
        pass

    def fn(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    shrunk: list[int] = []
    assert run_in_batches(fn, list(range(7)), 8, on_shrink=shrunk.append) == [x * 10 for x in range(7)]
    assert shrunk == [4, 2]
    assert calls == [7, 4, 2, 2, 2, 1]

    with pytest.raises(ValueError):
        run_in_batches(lambda b: (_ for _ in ()).throw(ValueError("not memory")), [1, 2], 2)


def test_unknown_backend_names_the_choices_and_availability_is_a_table(monkeypatch):
    import importlib.util

    from animlora.backends.segmentation.base import BackendEntry

    s = settings()
    with pytest.raises(ConfigError, match="choices: isnet, classic, sam2, yolo"):
        get_segmenter("magic", s.segment, s.models)
    table = availability()
    assert set(table) == set(BACKENDS)
    assert table["classic"] is True
    assert table["yolo"] is (importlib.util.find_spec("ultralytics") is not None)
    monkeypatch.setitem(BACKENDS, "later", BackendEntry("", (), "x", "planned", implemented=False))
    with pytest.raises(ConfigError, match="'later' is not implemented.*isnet, classic, sam2, yolo"):
        get_segmenter("later", s.segment, s.models)
    assert availability()["later"] is False


def test_a_fixed_size_graph_runs_at_another_size_after_the_resize_rewrite(tmp_path):
    """Exported ISNet graphs bake upsampling sizes traced at 1024; the rewrite turns them
    into scales so the model runs at ``segment.isnet_size``."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from animlora.backends.segmentation.isnet import IsnetMatte

    sizes = np.array([1, 1, 64, 64], np.int64)  # baked, as in the exported ISNet
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["gray"], axes=[1], keepdims=1),
            helper.make_node("MaxPool", ["gray"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Resize", ["pooled", "", "", "sizes"], ["up"], mode="nearest"),
            helper.make_node("Sigmoid", ["up"], ["output"]),
        ],
        "baked",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 64, 64])],
        [numpy_helper.from_array(sizes, "sizes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "w" / "baked.onnx"
    path.parent.mkdir()
    onnx.save(model, path)

    image = np.zeros((90, 120, 3), np.uint8)
    image[20:60, 30:80] = 255
    native = IsnetMatte(path, size=0, runtime="onnxruntime")
    assert native.size == (64, 64)
    mattes = []
    for runtime in ("onnxruntime", "openvino"):
        resized = IsnetMatte(path, size=96, runtime=runtime, precision="f32")
        assert resized.size == (96, 96)
        mattes.append(resized.predict([image])[0])
        assert mattes[-1].shape == (90, 120)
        assert mattes[-1][40, 55] > 0.6 and mattes[-1][5, 5] < 0.6
    np.testing.assert_allclose(mattes[0], mattes[1], atol=1e-4)  # both engines run the same graph
    assert list((path.parent / ".derived").glob("*-flex.onnx"))  # cached beside the weights


def test_isnet_runtime_auto_uses_onnxruntime_without_openvino_and_openvino_alone_is_a_clear_error(
    tmp_path, monkeypatch
):
    import importlib.util

    from animlora.backends.segmentation import isnet
    from animlora.errors import MissingDependencyError

    model = tiny_isnet(tmp_path / "tiny.onnx", size=64)
    real = importlib.util.find_spec
    monkeypatch.setattr(isnet.importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert isnet.IsnetMatte(model, runtime="auto").describe.startswith("onnxruntime")
    with pytest.raises(MissingDependencyError, match=r"segment.isnet_runtime 'openvino'.*pip install 'animlora\[cpu\]'"):
        isnet.IsnetMatte(model, runtime="openvino")


def test_the_coarse_look_adds_only_what_the_fine_look_has_nothing_of():
    """cgi-bench seed 2, shot 9: isnet at 1024² scores the defocused bunny behind the boy in
    focus as background (0.00 of its pixels >= 0.15), at 320² it finds it (0.84-1.00)."""
    from animlora.backends.segmentation.instances import add_coarse, split_matte

    fine = np.zeros((120, 200), np.float32)
    fine[20:100, 20:80] = 0.95  # the subject in focus
    coarse = np.zeros_like(fine)
    coarse[15:105, 15:85] = 0.9  # the same subject, fatter edges
    coarse[30:90, 130:170] = 0.6  # the defocused one only the coarse look sees
    out = add_coarse(fine, coarse, 0.15)
    assert np.array_equal(out[:, :100], fine[:, :100])  # the fine subject keeps its fine edges
    assert (out[30:90, 130:170] == np.float32(0.6)).all() and out[:, 100:].sum() == np.float32(0.6) * 60 * 40
    assert len(split_matte(fine, 0, 0.15, 0.002)) == 1 and len(split_matte(out, 0, 0.15, 0.002)) == 2
    assert settings().segment.isnet_coarse_size == 0  # off by default
