"""The model registry: one entry per model any backend of any stage can use.

Later stages add their entries to ``MODELS``; none writes its own loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from animlora.errors import AnimloraError


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry name, used in settings and `animlora models pull NAME`
    kind: str  # segmentation | embedding | captioning | inpainting | enhancement | diffusion
    description: str
    used_by: tuple[str, ...]  # stage.backend that use it
    hf_repo: str | None = None  # hub repository id
    hf_revision: str | None = None
    # files needed from the repository (glob patterns); empty = the whole snapshot
    hf_files: tuple[str, ...] = ()
    # file name (relative to the model folder) -> sha256, checked on pull and import
    sha256: dict[str, str] = field(default_factory=dict)
    size_mb: float | None = None  # approximate download size
    license: str = ""
    # "module:function" taking (spec, destination folder) for a source other than the hub
    # (e.g. an npm package); tried by `models pull` after the hub
    other_source: str | None = None
    other_source_label: str = ""


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        known = ", ".join(sorted(MODELS)) or "none"
        raise AnimloraError(f"unknown model {name!r}; known models: {known}")
    return spec


# -- segmentation ------------------------------------------------------------------------
register(
    ModelSpec(
        name="isnet",
        kind="segmentation",
        description="ISNet general-use matting model (ONNX, fp16 weights, float32 I/O, 1024x1024)",
        used_by=("segment.isnet", "segment.sam2"),
        hf_repo="imgly/isnet-general-onnx",
        hf_files=("isnet_fp16.onnx",),
        sha256={"isnet.onnx": "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"},
        size_mb=88.2,
        license="Apache-2.0 (ISNet/DIS weights); the npm package itself is AGPL-3.0",
        other_source="animlora.models.npm:fetch_imgly_isnet",
        other_source_label="npm @imgly/background-removal-data@1.4.5 (dist/resources.json /models/medium)",
    )
)

for _size, _mb in (("tiny", 156), ("small", 184), ("base-plus", 324), ("large", 898)):
    register(
        ModelSpec(
            name=f"sam2.1-hiera-{_size}",
            kind="segmentation",
            description=f"SAM 2.1 Hiera-{_size} (transformers Sam2VideoModel), video masks with tracking",
            used_by=("segment.sam2",),
            hf_repo=f"facebook/sam2.1-hiera-{_size}",
            hf_files=("*.json", "*.safetensors"),
            size_mb=float(_mb),
            license="Apache-2.0",
        )
    )

# ultralytics YOLO-seg (.pt); ultralytics fetches these from its GitHub release assets,
# which animlora never downloads at run time. The hub repositories are not verified (no
# hub access while this was written): `animlora models import NAME file.pt` takes a local file.
for _name, _repo, _mb in (("yolo11n-seg", "Ultralytics/YOLO11", 6.0), ("yolo11s-seg", "Ultralytics/YOLO11", 20.5),
                          ("yolov8n-seg", "Ultralytics/YOLOv8", 6.9)):
    register(
        ModelSpec(
            name=_name,
            kind="segmentation",
            description=f"ultralytics {_name} (COCO instance segmentation, .pt); "
            f"`animlora models import {_name} PATH` takes a local {_name}.pt",
            used_by=("segment.yolo",),
            hf_repo=_repo,
            hf_files=(f"{_name}.pt",),
            size_mb=_mb,
            license="AGPL-3.0 (ultralytics weights)",
        )
    )

# -- inpainting ---------------------------------------------------------------------------
register(
    ModelSpec(
        name="big-lama",
        kind="inpainting",
        description="LaMa big (Fourier-convolution inpainting), loaded with spandrel",
        used_by=("inpaint.lama",),
        hf_repo="fashn-ai/LaMa",
        hf_files=("big-lama.safetensors",),
        size_mb=205.0,
        license="Apache-2.0",
    )
)


# -- enhancement (enhance stage): super-resolution through spandrel -----------------------
# The released files are on GitHub (xinntao/Real-ESRGAN releases); the hub repositories below
# are mirrors that were not fetched while this was written (no hub access): `animlora models
# import NAME FILE` takes the release file as it is. Face restorers (GFPGAN: Apache-2.0 with
# NVIDIA StyleGAN2 parts; CodeFormer: S-Lab non-commercial; RestoreFormer++: Apache-2.0) are
# not wired in this version (docs/enhance.md).
register(ModelSpec(
    name="realesrgan-x4plus", kind="enhancement",
    description="Real-ESRGAN x4plus (RRDBNet, 4x): real-world super-resolution that keeps smooth 3D shading; "
    "the 3d profile's default",
    used_by=("enhance.spandrel",), hf_repo="lllyasviel/Annotators", hf_files=("RealESRGAN_x4plus.pth",),
    size_mb=63.9, license="BSD-3-Clause",
))
register(ModelSpec(
    name="realesr-general-x4v3", kind="enhancement",
    description="Real-ESRGAN general x4v3 (SRVGGNetCompact, 4x): small and fast, a little softer than x4plus",
    used_by=("enhance.spandrel",), hf_repo="ai-forever/Real-ESRGAN", hf_files=("realesr-general-x4v3.pth",),
    size_mb=4.7, license="BSD-3-Clause",
))
register(ModelSpec(
    name="realesrgan-x4plus-anime6b", kind="enhancement",
    description="Real-ESRGAN x4plus anime 6B (RRDBNet, 6 blocks, 4x): line art and flat colours; the 2d profile's default",
    used_by=("enhance.spandrel",), hf_repo="ai-forever/Real-ESRGAN", hf_files=("RealESRGAN_x4plus_anime_6B.pth",),
    sha256={"RealESRGAN_x4plus_anime_6B.pth": "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da"},
    size_mb=17.9, license="BSD-3-Clause",
))

# -- embedding (identity stage) ------------------------------------------------------
_HF_IMAGE_FILES = ("*.json", "model.safetensors")
register(ModelSpec(
    name="clip-vit-large-patch14", kind="embedding",
    description="OpenAI CLIP ViT-L/14: image embeddings for identity clustering",
    used_by=("embed.clip", "evaluate"), hf_repo="openai/clip-vit-large-patch14",
    hf_files=(*_HF_IMAGE_FILES, "merges.txt"),  # evaluate also needs the tokenizer
    size_mb=1710, license="MIT",
))
register(ModelSpec(
    name="siglip-base-patch16-224", kind="embedding",
    description="Google SigLIP base/16 at 224 px: image embeddings for identity clustering",
    used_by=("embed.siglip",), hf_repo="google/siglip-base-patch16-224", hf_files=_HF_IMAGE_FILES,
    size_mb=813, license="Apache-2.0",
))
register(ModelSpec(
    name="dinov2-base", kind="embedding",
    description="Meta DINOv2 ViT-B/14: self-supervised image features for identity clustering",
    used_by=("embed.dinov2",), hf_repo="facebook/dinov2-base", hf_files=_HF_IMAGE_FILES,
    size_mb=346, license="Apache-2.0",
))
# -- captioning (caption stage) ---------------------------------------------------------
register(ModelSpec(
    name="blip-large", kind="captioning", description="BLIP image captioning, large (plain sentences)",
    used_by=("caption.blip",), hf_repo="Salesforce/blip-image-captioning-large",
    hf_files=("*.json", "*.safetensors", "*.txt"), size_mb=1880, license="BSD-3-Clause",
))
register(ModelSpec(
    name="blip2-opt-2.7b", kind="captioning", description="BLIP-2 with OPT-2.7b (plain sentences, better detail)",
    used_by=("caption.blip",), hf_repo="Salesforce/blip2-opt-2.7b",
    hf_files=("*.json", "*.safetensors", "*.txt", "*.model"), size_mb=15500, license="MIT",
))
register(ModelSpec(
    name="florence2-large", kind="captioning", description="Florence-2 large, transformers-native weights",
    used_by=("caption.florence2",), hf_repo="florence-community/Florence-2-large",
    hf_files=("*.json", "*.safetensors", "*.txt"), size_mb=1550, license="MIT",
))
register(ModelSpec(
    name="florence2-base", kind="captioning", description="Florence-2 base, transformers-native weights",
    used_by=("caption.florence2",), hf_repo="florence-community/Florence-2-base",
    hf_files=("*.json", "*.safetensors", "*.txt"), size_mb=470, license="MIT",
))
register(ModelSpec(
    name="qwen2.5-vl-3b", kind="captioning", description="Qwen2.5-VL-3B-Instruct (schema-guided JSON captions)",
    used_by=("caption.qwen2_5_vl",), hf_repo="Qwen/Qwen2.5-VL-3B-Instruct",
    hf_files=("*.json", "*.safetensors", "*.txt", "merges.txt"), size_mb=7500, license="Qwen Research",
))
register(ModelSpec(
    name="qwen2.5-vl-7b", kind="captioning", description="Qwen2.5-VL-7B-Instruct (schema-guided JSON captions)",
    used_by=("caption.qwen2_5_vl",), hf_repo="Qwen/Qwen2.5-VL-7B-Instruct",
    hf_files=("*.json", "*.safetensors", "*.txt", "merges.txt"), size_mb=16600, license="Apache-2.0",
))


# -- train / evaluate ---------------------------------------------------------------------
_DIFFUSERS_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/diffusion_pytorch_model.safetensors",
                    "text_encoder*/model.safetensors", "tokenizer*/*")
register(ModelSpec(
    name="sd15",
    kind="diffusion",
    description="Stable Diffusion 1.5 base model (diffusers layout), for training and evaluation",
    used_by=("train.builtin", "evaluate"),
    hf_repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
    hf_files=_DIFFUSERS_FILES,
    size_mb=5200,
    license="CreativeML Open RAIL-M",
))
register(ModelSpec(
    name="sdxl-base",
    kind="diffusion",
    description="Stable Diffusion XL 1.0 base model (diffusers layout), for training and evaluation",
    used_by=("train.builtin", "evaluate"),
    hf_repo="stabilityai/stable-diffusion-xl-base-1.0",
    hf_files=_DIFFUSERS_FILES,
    size_mb=13000,
    license="CreativeML Open RAIL++-M",
))
register(ModelSpec(
    name="sd15-inpainting",
    kind="inpainting",
    description="Stable Diffusion 1.5 inpainting (9-channel U-Net, diffusers layout): text-guided occluder removal",
    used_by=("deocclude.sd",),
    hf_repo="stable-diffusion-v1-5/stable-diffusion-inpainting",
    hf_files=_DIFFUSERS_FILES,
    size_mb=4300,
    license="CreativeML Open RAIL-M",
))
