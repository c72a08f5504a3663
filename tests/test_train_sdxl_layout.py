"""Key names and shapes of our SDXL kohya file on the full-size layout (U-Net + both text encoders
built on the ``meta`` device: no memory, no weights) against the module list sd-scripts writes
for SDXL, generated from its rules: ``networks/lora.py`` puts a LoRA on every Linear / 1×1 conv
inside each ``Transformer2DModel`` of its original SDXL U-Net (``library/sdxl_original_unet.py``
names and sizes) and of ``CLIPAttention``/``CLIPMLP`` in both text encoders; the name is
``prefix.<module path>.<child>`` with dots as underscores (prefixes lora_unet / lora_te1 / lora_te2);
``lora_down`` is (rank, in), ``lora_up`` (out, rank), ``alpha`` a scalar (kohya-ss/sd-scripts 48d368fa)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lora_size  # noqa: E402  (the full-size configs and the meta-device builder)

from animlora.training.kohya_format import kohya_state_dict  # noqa: E402

RANK = 2


def sd_scripts_sdxl_modules() -> dict[str, tuple[int, int]]:
    """kohya name → (in_features, out_features) of every module sd-scripts trains for SDXL."""
    context, out = 2048, {}
    # sdxl_original_unet: the SpatialTransformer of each block (channels, transformer depth)
    blocks = ([(f"input_blocks_{i}_1", 640, 2) for i in (4, 5)] + [(f"input_blocks_{i}_1", 1280, 10) for i in (7, 8)]
              + [("middle_block_1", 1280, 10)] + [(f"output_blocks_{i}_1", 1280, 10) for i in (0, 1, 2)]
              + [(f"output_blocks_{i}_1", 640, 2) for i in (3, 4, 5)])
    for block, ch, depth in blocks:
        prefix = f"lora_unet_{block}"
        out[f"{prefix}_proj_in"] = out[f"{prefix}_proj_out"] = (ch, ch)  # use_linear_projection: Linear
        for j in range(depth):
            t = f"{prefix}_transformer_blocks_{j}"
            for attn, kv in (("attn1", ch), ("attn2", context)):
                out[f"{t}_{attn}_to_q"] = (ch, ch)
                out[f"{t}_{attn}_to_k"] = out[f"{t}_{attn}_to_v"] = (kv, ch)
                out[f"{t}_{attn}_to_out_0"] = (ch, ch)
            out[f"{t}_ff_net_0_proj"] = (ch, ch * 8)  # GEGLU: 2 × 4 × dim
            out[f"{t}_ff_net_2"] = (ch * 4, ch)
    for prefix, hidden, layers in (("lora_te1", 768, 12), ("lora_te2", 1280, 32)):
        for i in range(layers):
            layer = f"{prefix}_text_model_encoder_layers_{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out[f"{layer}_self_attn_{proj}"] = (hidden, hidden)
            out[f"{layer}_mlp_fc1"] = (hidden, hidden * 4)
            out[f"{layer}_mlp_fc2"] = (hidden * 4, hidden)
    return out


def test_sdxl_full_size_keys_and_shapes_equal_sd_scripts():
    unet, encoders = lora_size.build("sdxl", RANK, 16.0, te=True)
    state = kohya_state_dict(unet, encoders, "sdxl")
    expected = sd_scripts_sdxl_modules()
    names = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in state}
    assert sorted(names - set(expected)) == [] and sorted(set(expected) - names) == []
    by_prefix = {p: sum(n.startswith(p) for n in names) for p in ("lora_unet_", "lora_te1_", "lora_te2_")}
    assert by_prefix == {"lora_unet_": 722, "lora_te1_": 72, "lora_te2_": 192}
    assert len(state) == 3 * 986 == 2958
    for name, (fan_in, fan_out) in expected.items():
        assert tuple(state[f"{name}.lora_down.weight"].shape) == (RANK, fan_in), name
        assert tuple(state[f"{name}.lora_up.weight"].shape) == (fan_out, RANK), name
        assert state[f"{name}.alpha"].shape == () and float(state[f"{name}.alpha"]) == 16.0
