"""The segment stage's cost levers keep the outputs: OpenVINO compiles only the matte."""

from __future__ import annotations

import numpy as np
import pytest

from test_segment_backends import tiny_isnet


def test_openvino_compiles_only_the_first_output_and_the_matte_is_unchanged(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from animlora.backends.segmentation.isnet import IsnetMatte

    model = tiny_isnet(tmp_path / "tiny.onnx", size=64)  # two outputs: the matte and a side output
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(2)]
    vino = IsnetMatte(model, runtime="openvino", precision="f32")
    assert len(vino.engine.compiled.outputs) == 1  # type: ignore[attr-defined]
    exact = IsnetMatte(model, runtime="onnxruntime")
    for a, b in zip(vino.predict(frames), exact.predict(frames), strict=True):
        assert a.shape == (90, 160)
        assert float(np.abs(a - b).max()) < 1e-4
