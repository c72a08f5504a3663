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


def test_frames_written_in_threads_give_the_files_and_rows_of_one_writer(tmp_path, monkeypatch):
    import hashlib

    from test_segment_stage import make_input, rows, segment

    inp = make_input(tmp_path / "in")
    found = {}
    for writers in (1, 2):
        monkeypatch.setattr("animlora.stages.segment.WRITERS", writers)
        out = tmp_path / f"out{writers}"
        segment(inp, out)
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg"))
        assert len(files) >= 7 * 4 + 4  # per instance: cut-out, mask, two variants; a plate per frame
        found[writers] = (
            {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
            rows(out, "SELECT id, frame_id, track_id, path, mask_path, bbox, area_fraction, sharpness, measures "
                      "FROM instances ORDER BY id"),
            rows(out, "SELECT frame_id, n_instances, background_path FROM segment_frames ORDER BY frame_id"),
        )
    assert found[1] == found[2]
