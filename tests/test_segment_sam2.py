"""SAM 2 backend: a tiny randomly initialised Sam2VideoModel runs the real prompt +
video-propagation path; every object keeps its track id across the shot's frames."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from animlora.backends.segmentation.base import Frames, get_segmenter  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from segment_synth import scene  # noqa: E402

SIZE = 128


def tiny_sam2():
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VideoMaskDecoderConfig,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoPromptEncoderConfig,
        Sam2VisionConfig,
    )
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    torch.manual_seed(0)
    backbone = Sam2HieraDetConfig(
        hidden_size=12, image_size=SIZE, patch_stride=4, patch_kernel_size=7, patch_padding=3,
        blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[12, 24, 48, 96],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=128,
    )
    # transformers requires memory channels (64, fixed in its memory attention) < hidden size
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(image_size=SIZE, patch_size=16, mask_input_channels=8, hidden_size=128),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=128, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
        ),
        image_size=SIZE, memory_attention_hidden_size=128, memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64, memory_attention_rope_feat_sizes=[8, 8],
        mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
    )
    model = Sam2VideoModel(config).eval()
    # random weights would call every object absent (no mask at all): make the presence
    # head say "present", so the propagation path yields a mask per object and frame
    last = model.mask_decoder.pred_obj_score_head.proj_out
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 8.0)
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(size={"height": SIZE, "width": SIZE}, mask_size={"height": SIZE // 4, "width": SIZE // 4}),
        Sam2VideoVideoProcessor(size={"height": SIZE, "width": SIZE}),
        target_size=SIZE,
    )
    return model, processor


def test_tiny_sam2_tracks_are_consistent_across_frames():
    from animlora.backends.segmentation.sam2 import Sam2Segmenter

    settings = load_settings(overrides={"segment": {"device": "cpu", "batch_size": 4, "min_area_fraction": 0.0}}).settings
    frames = [
        scene(i, [((70 + 6 * i, 90), (30, 45), (220, 90, 60)), ((240 - 6 * i, 90), (35, 40), (60, 80, 210))])[0]
        for i in range(4)
    ]
    model, processor = tiny_sam2()
    prompter = get_segmenter("classic", settings.segment, settings.models)
    segmenter = Sam2Segmenter(settings.segment, settings.models, model=model, processor=processor, prompter=prompter)
    prompts = prompter.segment(Frames.of_arrays(frames))
    assert sorted({p.track for p in prompts}) == [0, 1]

    instances = segmenter.segment(Frames.of_arrays(frames))

    by_track: dict[int, list[int]] = {}
    for inst in instances:
        by_track.setdefault(inst.track, []).append(inst.frame)
        assert 0.0 <= inst.score <= 1.0
        assert inst.alpha.dtype == np.float32
    # both prompted objects come back, each once in every frame, under its prompt's id
    assert sorted(by_track) == [0, 1]
    assert all(sorted(f) == [0, 1, 2, 3] for f in by_track.values())


def test_objects_prompted_on_different_frames_each_come_back_in_every_frame():
    # on real footage two characters are rarely largest on the same frame: the red one grows,
    # the blue one shrinks, so their prompts land on the last and the first frame. The video
    # model needs each prompt run on its own frame before it propagates (it raised
    # "maskmem_features in conditioning outputs cannot be empty" when the full-size model was
    # run on the sample clip).
    from animlora.backends.segmentation.sam2 import Sam2Segmenter

    settings = load_settings(overrides={"segment": {"device": "cpu", "batch_size": 4, "min_area_fraction": 0.0}}).settings
    frames = [
        scene(i, [((70, 90), (24 + 6 * i, 36 + 6 * i), (220, 90, 60)), ((240, 90), (44 - 6 * i, 40 - 6 * i), (60, 80, 210))])[0]
        for i in range(4)
    ]
    model, processor = tiny_sam2()
    prompter = get_segmenter("classic", settings.segment, settings.models)
    prompts = prompter.segment(Frames.of_arrays(frames))
    largest = {}
    for p in prompts:
        area = float((p.alpha >= settings.segment.alpha_threshold).sum())
        if p.track not in largest or area > largest[p.track][0]:
            largest[p.track] = (area, p.frame)
    assert len({frame for _, frame in largest.values()}) == 2  # the case: two prompt frames
    segmenter = Sam2Segmenter(settings.segment, settings.models, model=model, processor=processor, prompter=prompter)
    by_track: dict[int, list[int]] = {}
    for inst in segmenter.segment(Frames.of_arrays(frames)):
        by_track.setdefault(inst.track, []).append(inst.frame)
    assert sorted(by_track) == sorted(largest)
    assert all(sorted(f) == [0, 1, 2, 3] for f in by_track.values())


def test_a_prompter_that_fell_back_is_recorded_with_the_masks(tmp_path):
    # sam2 whose ISNet prompter cannot run (its weights not here) is prompted by classic: the
    # shot's rows must say so (it recorded plain 'sam2', so pulling ISNet redid nothing), and
    # the report's note says why
    from animlora.backends.segmentation.sam2 import Sam2Segmenter

    store = tmp_path / "empty_store"
    store.mkdir()
    overrides = {"segment": {"device": "cpu", "sam2_prompter": "isnet"}, "models": {"store": str(store), "offline": True}}
    settings = load_settings(overrides=overrides).settings
    model, processor = tiny_sam2()
    segmenter = Sam2Segmenter(settings.segment, settings.models, model=model, processor=processor)
    assert segmenter.prompter.name == "classic" and segmenter.recorded_as == "sam2+classic"
    assert "prompter 'isnet' unavailable" in segmenter.fallback_note and "prompted by 'classic'" in segmenter.fallback_note
    asked = load_settings(overrides={"segment": {"device": "cpu", "sam2_prompter": "classic"}}).settings
    as_asked = Sam2Segmenter(asked.segment, asked.models, model=model, processor=processor)
    assert as_asked.recorded_as == "sam2" and as_asked.fallback_note is None
