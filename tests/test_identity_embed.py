"""Embedding backends and the embed stage: the color descriptor, tiny CLIP/DINOv2 built from
configs running the real transformers path, the per-content cache, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animlora.backends.embedding import available_backends, create_embedder
from animlora.backends.embedding.color import ColorEmbedder
from animlora.config import load_settings
from animlora.errors import ConfigError, ModelNotFoundError
from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, dataset, render


def _settings(tmp_path: Path, **embed):
    tree = {"embed": embed, "models": {"store": str(tmp_path / "store"), "offline": True}}
    return load_settings(overrides=tree).settings


def test_color_descriptor_same_character_close_other_characters_far():
    images, labels, lights = dataset(per_character=8, seed=3)
    x = ColorEmbedder().embed(images)
    assert x.dtype == np.float32 and x.shape[0] == len(images)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    sim = x @ x.T
    lab = np.asarray(labels)
    same = sim[lab[:, None] == lab[None, :]]
    other = sim[lab[:, None] != lab[None, :]]
    # every same-character pair (including across the two light set-ups) beats every
    # pair of different characters, including the two with one rig and different colours
    assert same.min() > other.max()
    # deterministic
    assert np.array_equal(x, ColorEmbedder().embed(images))


def test_color_handles_empty_alpha_and_rgb_input():
    rng = np.random.default_rng(0)
    empty = np.zeros((40, 30, 4), np.uint8)
    rgb = render(CHARACTERS[0], 0, rng)[..., :3]
    x = ColorEmbedder().embed([empty, rgb])
    assert x.shape[0] == 2 and np.isfinite(x).all()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A CLIP and a DINOv2 with random weights, saved like hub snapshots."""
    pytest.importorskip("transformers")
    import torch
    from transformers import (
        BitImageProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        Dinov2Config,
        Dinov2Model,
    )

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(**vision)).save_pretrained(root / "dino")
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "dino")
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    siglip_text = {k: v for k, v in text.items() if k not in ("bos_token_id", "eos_token_id")}
    SiglipModel(SiglipConfig(text_config=siglip_text, vision_config=vision)).save_pretrained(root / "siglip")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "siglip")
    return {"clip-vit-large-patch14": str(root / "clip"), "dinov2-base": str(root / "dino"),
            "siglip-base-patch16-224": str(root / "siglip")}


def _model_settings(tmp_path, tiny_models, backend, batch_size=3):
    tree = {"embed": {"backend": backend, "batch_size": batch_size},
            "models": {"paths": tiny_models, "store": str(tmp_path / "store"), "offline": True}}
    return load_settings(overrides=tree).settings


def test_tiny_clip_and_dinov2_run_the_real_path(tmp_path, tiny_models):
    images, _, _ = dataset(per_character=2, seed=1)
    s = _model_settings(tmp_path, tiny_models, "clip")
    clip, notes = create_embedder(s.embed, s.models)
    assert clip.key == "clip:clip-vit-large-patch14" and notes == []
    x = clip.embed(images)  # 8 images in batches of 3
    assert x.shape == (8, 16) and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    # batching does not change the result
    s1 = _model_settings(tmp_path, tiny_models, "clip", batch_size=8)
    assert np.allclose(create_embedder(s1.embed, s1.models)[0].embed(images), x, atol=1e-5)

    s = _model_settings(tmp_path, tiny_models, "dinov2")
    dino, _ = create_embedder(s.embed, s.models)
    y = dino.embed(images)
    assert dino.key == "dinov2:dinov2-base" and y.shape == (8, 64)  # class token + mean patch token

    s = _model_settings(tmp_path, tiny_models, "siglip")
    siglip, _ = create_embedder(s.embed, s.models)
    assert siglip.key == "siglip:siglip-base-patch16-224" and siglip.embed(images).shape == (8, 32)

    s = _model_settings(tmp_path, tiny_models, "clip+dinov2")
    both, _ = create_embedder(s.embed, s.models)
    z = both.embed(images)
    assert both.key == "clip:clip-vit-large-patch14+dinov2:dinov2-base" and z.shape == (8, 80)
    assert np.allclose(z[:, :16] * np.sqrt(2), x, atol=1e-4)


def test_missing_weights_error_and_fallback(tmp_path):
    if not available_backends()["clip"]:
        pytest.skip("transformers not installed")
    s = _settings(tmp_path, backend="siglip")
    with pytest.raises(ModelNotFoundError, match="siglip-base-patch16-224.*animlora models pull"):
        create_embedder(s.embed, s.models)
    s = _settings(tmp_path, backend="siglip", fallback="color")
    embedder, notes = create_embedder(s.embed, s.models)
    assert embedder.key.startswith("color-") and "fallback" in notes[0]


def test_unknown_backend_names_the_choices(tmp_path):
    s = _settings(tmp_path, backend="vit")
    with pytest.raises(ConfigError, match="color, clip, siglip, dinov2, auto"):
        create_embedder(s.embed, s.models)


def test_embed_stage_caches_by_content(tmp_path):
    ws = make_project(tmp_path / "p")
    images, labels, _ = dataset(per_character=3, seed=2)
    ids = [f"inst{n:02d}" for n in range(len(images))]
    add_instances(ws, images[:8], ids[:8], kept=[True] * 7 + [False])
    run_identity(ws, stages=("embed",))
    report = json.loads((ws.root / "embeddings" / "embedding_report.json").read_text())
    assert (report["instances"], report["embedded"], report["cached"]) == (7, 7, 0)
    with np.load(ws.root / "embeddings" / "embeddings.npz") as npz:
        assert list(npz["ids"]) == ids[:7] and npz["vectors"].shape[0] == 7

    add_instances(ws, images[8:], ids[8:])
    run_identity(ws, stages=("embed",))
    report = json.loads((ws.root / "embeddings" / "embedding_report.json").read_text())
    assert (report["instances"], report["embedded"], report["cached"]) == (11, 4, 7)

    # a setting that does not change the vectors re-embeds nothing
    run_identity(ws, {"embed": {"batch_size": 5}}, stages=("embed",))
    report = json.loads((ws.root / "embeddings" / "embedding_report.json").read_text())
    assert (report["embedded"], report["cached"]) == (0, 11)
    with ws.open_catalog() as catalog:
        assert catalog.one("SELECT COUNT(*) FROM embeddings")[0] == 11
        assert catalog.one("SELECT COUNT(*) FROM identity_instances")[0] == 11


def test_shot_light_gains_read_from_the_embed_report_of_that_model(tmp_path):
    from animlora.records.embed import REPORT, shot_light_gains

    assert shot_light_gains(tmp_path, "color-v1+shotlight2") == {}  # no report
    (tmp_path / "embeddings").mkdir()
    report = {"model": "color-v1+shotlight2", "shot_light": {"shots": 2, "gains": {"s1": [1.5, 1.0, 0.7]}}}
    (tmp_path / "embeddings" / REPORT).write_text(json.dumps(report))
    assert shot_light_gains(tmp_path, "color-v1+shotlight2") == {"s1": [1.5, 1.0, 0.7]}
    assert shot_light_gains(tmp_path, "color-v1") == {}  # the report is another embedder's
    (tmp_path / "embeddings" / REPORT).write_text("{not json")
    assert shot_light_gains(tmp_path, "color-v1+shotlight2") == {}
