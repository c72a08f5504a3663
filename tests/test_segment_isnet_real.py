"""With the real ISNet weights (``scripts/fetch_isnet.sh``): the bunny of the bundled clip
is one instance, of a sensible size, with one track id in every sampled frame."""

from __future__ import annotations

import numpy as np
import pytest

from animlora.config import load_settings
from animlora.models import locate


@pytest.fixture
def real_isnet(real_model_store):
    settings = load_settings().settings
    location = locate("isnet", settings.models)
    if location.path is None:
        pytest.skip("ISNet weights absent: run scripts/fetch_isnet.sh (animlora models pull isnet)")
    return settings


def sampled_frames(indices: list[int]) -> list[np.ndarray]:
    import av

    from animlora.data import sample_clip

    wanted, out = set(indices), []
    with av.open(str(sample_clip())) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= max(indices):
                break
    return out


def test_the_bunny_is_one_track_with_a_sensible_area(real_isnet):
    pytest.importorskip("onnxruntime")
    from animlora.backends.segmentation.base import Frames, get_segmenter

    settings = real_isnet
    frames = sampled_frames([45, 85, 125])  # the bunny standing, arms moving
    instances = get_segmenter("isnet", settings.segment, settings.models).segment(Frames.of_arrays(frames))
    height, width = frames[0].shape[:2]
    bunnies = []
    for f in range(len(frames)):
        mine = [i for i in instances if i.frame == f]
        assert mine, f"nothing found in frame {f}"
        bunnies.append(max(mine, key=lambda i: float((i.alpha >= 0.15).sum())))
    areas = [float((b.alpha >= 0.15).sum()) / (height * width) for b in bunnies]
    assert all(0.08 <= a <= 0.35 for a in areas), areas
    assert all(b.score >= 0.8 for b in bunnies)
    assert len({b.track for b in bunnies}) == 1
    # the bunny is one piece, not split at the neck or arms
    for b in bunnies:
        assert b.bbox[3] > 0.5 * height


def test_both_engines_give_the_same_matte_on_the_real_model(real_isnet):
    """The default engine (OpenVINO; bfloat16 where the CPU computes it natively) against
    onnxruntime's float32 run of the same file: the masks agree."""
    pytest.importorskip("openvino")
    from animlora.backends.segmentation.isnet import IsnetMatte, find_onnx
    from animlora.models import resolve

    onnx_path = find_onnx(resolve("isnet", real_isnet.models))
    frames = sampled_frames([85])
    default = IsnetMatte(onnx_path).predict(frames)[0] >= 0.5
    exact = IsnetMatte(onnx_path, runtime="onnxruntime").predict(frames)[0] >= 0.5
    assert exact.mean() > 0.05
    assert (default & exact).sum() / (default | exact).sum() >= 0.98
