"""Pydantic models of every settings section.

No field has a default here: defaults live in ``defaults/<section>.yaml`` so that the
YAML, the CLI and the code can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator

# YAML 1.1 (PyYAML) reads these words as booleans; a choice field that offers one gets it back
_YAML_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}
# A fallback setting, in every section: none (a backend that cannot run is an error) | auto
# (the lighter backends its registry entry declares, in order) | a backend name. Earlier
# releases wrote some as booleans: true reads as auto, false as none.
_FALLBACK_WORDS = {False: ("none",), True: ("auto",)}
_FALLBACK_WAS_BOOLEAN = {"fallback": {"auto": True, "none": False}}


def _choices(annotation: Any) -> tuple[str, ...]:
    """The string values of a ``Literal[...]`` annotation (also inside ``X | None``)."""
    if get_origin(annotation) is Literal:
        return tuple(a for a in get_args(annotation) if isinstance(a, str))
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(c for arg in get_args(annotation) for c in _choices(arg))
    return ()


class Section(BaseModel):
    """Base of a settings section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields added after a release, with the value that means "behave as before": while a
    # field holds it, it stays out of the fingerprint, so adding it redoes no finished work.
    added_fields: ClassVar[dict[str, Any]] = {}
    # Fields whose spelling changed after a release: field -> {value now: the value it was
    # written as before}. The fingerprint hashes the earlier spelling, so upgrading redoes nothing.
    earlier_values: ClassVar[dict[str, dict[Any, Any]]] = {}
    # Fields renamed after a release: name now -> the name it had. A settings file of an earlier
    # release reads (the loader warns, config/loader.py); the fingerprint hashes the earlier
    # name, so upgrading redoes nothing.
    earlier_names: ClassVar[dict[str, str]] = {}
    @model_validator(mode="before")
    @classmethod
    def _earlier_name(cls, data: Any) -> Any:
        """A field written under its earlier name (a stored settings file) reads as the field."""
        if not isinstance(data, dict) or not any(old in data for old in cls.earlier_names.values()):
            return data
        fixed = dict(data)
        for name, old in cls.earlier_names.items():
            if old in fixed and name not in fixed:
                fixed[name] = fixed.pop(old)
        return fixed

    def named_as_before(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (field -> value) with renamed fields under the names they had (for hashes
        that earlier releases computed)."""
        return {self.earlier_names.get(name, name): value for name, value in values.items()}

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        """``mixed_precision: no`` is read by YAML as false: a choice that offers the word
        (no/off/false, yes/on/true) gets the word back, so the unquoted spelling works. A
        ``fallback`` of the one form (none | auto | a backend name) reads true as auto and
        false as none (the spelling of earlier releases)."""
        if not isinstance(data, dict):
            return data
        fixed = dict(data)
        for name, value in data.items():
            if isinstance(value, bool) and name in cls.model_fields:
                choices = _choices(cls.model_fields[name].annotation)
                words = _FALLBACK_WORDS[value] if name == "fallback" else _YAML_WORDS[value]
                word = next((w for w in words if w in choices), None)
                if word is not None:
                    fixed[name] = word
        return fixed

    def fingerprint(self) -> str:
        """A stable hash of the section's values (part of a stage's settings hash)."""
        values = self.model_dump(mode="json")
        for name, spelled in self.earlier_values.items():
            if name in values and values[name] in spelled:
                values[name] = spelled[values[name]]
        for name, old in self.added_fields.items():
            if values.get(name) == old:
                values.pop(name, None)
        values = self.named_as_before(values)
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ProjectSettings(Section):
    name: str
    profile: Literal["3d", "2d"]
    seed: int
    videos: list[str] = Field(description="video files of the project, relative to project.yaml")


class RunnerSettings(Section):
    added_fields: ClassVar[dict[str, Any]] = {"executors": {}}
    executor: Literal["serial", "process", "ray"]
    executors: dict[str, Literal["serial", "process", "ray"]] = Field(
        description="per stage: the executor of that stage, over `executor` (e.g. {segment: ray, prefilter: serial})")
    workers: int = Field(ge=1, le=4096, description="process pool size; on Ray: tasks in flight / model actors")
    ray_address: str = Field(description="Ray cluster to join (ray://host:10001, host:6379, auto); "
                                         "empty = a local Ray that starts and stops with the run")
    ray_retries: int = Field(ge=0, le=100, description="Ray: times an item is sent again after its worker died")
    ray_gpus: float = Field(gt=0, le=8, description="Ray: GPUs per model actor (fractional shares a GPU)")

    @field_validator("ray_gpus")
    @classmethod
    def _one_gpu_share_or_whole_gpus(cls, value: float) -> float:
        # Ray gives an actor a share of one GPU or whole GPUs; it refuses 1.5 when the actor starts
        if value > 1 and abs(value - round(value)) > 1e-9:
            raise ValueError(f"{value:g} GPUs: a share of one GPU (at most 1) or a whole number of GPUs")
        return value


class ModelsSettings(Section):
    # name -> local file or folder holding that model's weights (wins over every cache)
    paths: dict[str, str]
    # where `animlora models pull/import` keep weights; empty = ~/.cache/animlora/models
    store: str
    offline: bool


class ExtractSettings(Section):
    added_fields: ClassVar[dict[str, Any]] = {"same_picture_motion": "shift"}
    mode: Literal["scene", "interval", "all"]
    detector: Literal["adaptive", "content", "hash"]
    scene_threshold: float | None = Field(
        gt=0, description="threshold of the chosen detector; null = its entry in detector_thresholds"
    )
    detector_thresholds: dict[Literal["adaptive", "content", "hash"], PositiveFloat] = Field(
        description="tuned threshold per detector, used when scene_threshold is null"
    )
    dissolve_threshold: float = Field(ge=0, description="mean luma change (0-255) that makes a dissolve")
    min_shot_frames: int = Field(ge=1, description="shortest shot; a flash that ends sooner is not a cut")
    analysis_width: int = Field(ge=32, le=1920)
    candidates_per_minute: float = Field(gt=0, description="scene mode: a video's budget per minute of it")
    min_candidates: int = Field(ge=0, description="scene mode: a project with fewer candidates in all is raised to this many")
    max_candidates: int = Field(ge=1, description="scene mode: most candidates one video gives")
    change_share: float = Field(ge=0, le=1, description="part of the budget that follows picture change")
    max_per_shot: int = Field(ge=1, description="scene mode: most candidates from one shot")
    same_picture_motion: Literal["shift", "affine"] = Field(
        description="scene mode: the camera move left out before two candidates of a shot are compared "
                    "(affine: zooms and dollies too; shift: the earlier test)"
    )
    interval_seconds: float = Field(gt=0)
    dedupe: bool
    dedupe_distance: int = Field(ge=0, le=64, description="max perceptual-hash Hamming distance")
    crop_bars: bool
    quality: Literal["high", "medium"]

    @property
    def threshold(self) -> float:
        """The threshold the chosen detector runs with."""
        if self.scene_threshold is not None:
            return self.scene_threshold
        return self.detector_thresholds[self.detector]


class SegmentSettings(Section):
    earlier_values: ClassVar[dict[str, dict[Any, Any]]] = _FALLBACK_WAS_BOOLEAN
    added_fields: ClassVar[dict[str, Any]] = {"isnet_coarse_size": 0, "isnet_edge_size": 0}
    backend: Literal["isnet", "classic", "sam2", "yolo"]
    fallback: Literal["none", "auto", "isnet", "classic"] = Field(
        description="the backend's weights/packages missing: none = error, auto = the lighter backends "
                    "(sam2 -> isnet -> classic), isnet/classic = from that one on; recorded in the report")
    alpha_threshold: float = Field(ge=0, le=1, description="matte value that counts as character; profile sets it")
    min_area_fraction: float = Field(ge=0, lt=1, description="smaller blobs are not instances")
    split_overlaps: bool
    refine: bool = Field(description="shot pass: cut props out of masks, merge parts that move together, score text")
    track_similarity: float = Field(ge=0, le=1, description="min shape/colour/position similarity to continue a track")
    batch_size: int = Field(ge=1)
    device: Literal["auto", "cpu", "cuda"]
    isnet_size: int = Field(ge=0, multiple_of=32, description="isnet input side in px; 0 = the model's own (1024)")
    isnet_coarse_size: int = Field(ge=0, multiple_of=32,
                                   description="isnet: a second look at this side (px) adds what only it finds; 0 = off")
    isnet_edge_size: int = Field(ge=0, multiple_of=32,
                                 description="isnet: a look at this side (px) gives back a body the frame's bottom "
                                             "edge cuts; 0 = off")
    cpu_streams: int = Field(ge=0, description="isnet: frames run concurrently on the CPU; 0 = the engine's choice")
    isnet_runtime: Literal["auto", "openvino", "onnxruntime"]
    isnet_precision: Literal["auto", "f32"] = Field(description="auto = bfloat16 where the CPU computes it natively")
    padding: float = Field(ge=0, le=1, description="box padding, fraction of the box's larger side")
    context_variants: list[Literal["original", "blurred"]]
    context_blur: float = Field(gt=0, description="Gaussian sigma (px) of the blurred-background variant")
    sam2_model: str = Field(description="models registry name of the SAM 2 checkpoint")
    sam2_prompter: Literal["isnet", "classic"]
    yolo_model: str = Field(description="models registry name of the YOLO-seg weights (.pt)")
    yolo_classes: list[str] = Field(description="class names that count as characters; empty = every class")
    yolo_confidence: float = Field(ge=0, le=1, description="min detection confidence of a yolo instance")
    yolo_size: int = Field(ge=32, multiple_of=32, description="yolo inference size (longer side), px")


class PrefilterMode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_area_fraction: float = Field(ge=0, lt=1)
    min_side: int = Field(ge=0, description="shorter side of the box, px")
    max_truncated_edges: int = Field(ge=0, le=4, description="frame edges an instance may touch")
    blur_factor: float = Field(ge=0, description="multiplies blur_threshold")
    min_score: float = Field(ge=0, le=1, description="backend's character confidence")
    max_area_fraction: float = Field(gt=0, le=1, description="larger = background taken for a character")
    max_aspect: float = Field(ge=1, description="longer/shorter box side; larger = strips, poles, horizons")


class PrefilterSettings(Section):
    # 0 = every instance cut by more frame edges than the mode allows is truncated (before)
    # max_text_over_length 0 = text over a character judged by its share of the mask alone (before)
    # still_shot 0 = a shot in which nothing moves keeps its instances (before)
    added_fields: ClassVar[dict[str, Any]] = {"closeup_min_height": 0.0, "max_text_over_length": 0.0,
                                              "still_shot": 0.0}
    mode: Literal["strict", "balanced", "lenient"]
    blur_threshold: float = Field(ge=0, le=1, description="crispness floor (0..1) inside the mask; profile sets it")
    blur_film: float = Field(ge=0, le=1, description="blurred below this fraction of the film's median crispness")
    blur_track: float = Field(ge=0, le=1, description="blurred below this fraction of its track's median crispness (of a pair: the crispest)")
    duplicate_distance: float = Field(ge=0, description="same-track appearance distance (0-255) under which it is a duplicate; 0 = off")
    closeup_min_height: float = Field(
        ge=0, le=1, description="cut by more edges than the mode allows, but by the bottom and this tall a share of "
                                "the frame's height: a close-up, kept (0 = off)")
    max_static: float = Field(ge=0, le=1, description="static fraction (unchanged relative to the set) of a still instance")
    still_shot: float = Field(
        ge=0, le=1, description="every instance of a shot (2+ frames) this static: nothing in it moves, its instances "
                                "are scenery (0 = off)")
    max_text: float = Field(ge=0, le=1, description="text score of title-card text")
    max_flat: float = Field(ge=0, le=2, description="share of one flat colour of a title graphic / logo; > 1 = off (2D)")
    text_detector: Literal["auto", "ppocr", "opencv", "off"] = Field(
        description="reads text in the frame: ppocr (pip install 'animlora[text]'), opencv (no weights), auto, off")
    max_text_cover: float = Field(ge=0, le=1, description="share of the mask under read text at which it is text")
    max_text_over: float = Field(ge=0, le=1, description="share of the mask under read text at which text is drawn over it")
    max_text_over_length: float = Field(
        ge=0, description="or how far read text runs over the mask, in line heights (~2 letters per height), at which "
                          "text is drawn over it; 0 = off")
    modes: dict[Literal["strict", "balanced", "lenient"], PrefilterMode]


class InpaintSettings(Section):
    # per_frame (with the flow settings at their defaults) is what earlier releases did
    added_fields: ClassVar[dict[str, Any]] = {"temporal": "per_frame", "flow": "auto", "raft_weights": "",
                                              "flow_error": 12.0, "reinpaint_fraction": 0.5, "plates": "always"}
    # plates decides whether plates are made, not what they are: it never enters the
    # fingerprint (auto hashes as always, which added_fields leaves out)
    earlier_values: ClassVar[dict[str, dict[Any, Any]]] = {**_FALLBACK_WAS_BOOLEAN, "plates": {"auto": "always"}}
    backend: Literal["lama", "opencv"]
    fallback: Literal["none", "auto", "opencv"] = Field(
        description="LaMa's weights or torch missing (and RAFT's, for inpaint.flow raft): none = error, "
                    "auto/opencv = opencv (DIS for the flow), recorded in the report")
    opencv_method: Literal["telea", "ns"]
    dilation: int = Field(ge=0, description="mask dilation in px before filling")
    radius: int = Field(ge=1, description="OpenCV inpainting radius")
    static_threshold: float = Field(ge=0, description="mean abs difference (0-255) of a shot's frames below which the camera is static")
    device: Literal["auto", "cpu", "cuda"]
    temporal: Literal["flow", "per_frame"] = Field(
        description="moving-camera shots (plates and occluder fills): flow = inpaint a keyframe and carry "
                    "its fill along optical flow; per_frame = inpaint every frame on its own")
    flow: Literal["auto", "dis", "raft"] = Field(
        description="optical flow: dis (OpenCV, CPU) | raft (torchvision, raft_weights) | auto = raft with its "
                    "weights on a GPU, else dis")
    raft_weights: str = Field(description="raft: a torchvision raft_small/raft_large state-dict file ('' = none)")
    flow_error: float = Field(ge=0, le=255, description="carried fill whose ring disagrees with the frame by more "
                                                        "than this (mean abs, 0-255) is re-inpainted")
    reinpaint_fraction: float = Field(ge=0, le=1, description="more of a hole than this failing: the frame "
                                                              "becomes a keyframe (inpainted whole)")
    plates: Literal["auto", "always"] = Field(
        description="auto = make plates only when a dataset reads them (dataset.kind background or all; "
                    "'animlora inpaint' on a folder always makes them); always = in every project run")


class DeoccludeSettings(Section):
    backend: Literal["inherit", "lama", "opencv", "sd"] = Field(
        description="what fills occluders: inherit = inpaint.backend; sd = text-guided Stable Diffusion inpainting"
    )
    fallback: Literal["none", "auto", "lama", "opencv"] = Field(
        description="sd weights or diffusers missing: use this backend instead (auto = lama; recorded in the "
                    "report); none = error"
    )
    sd_model: str = Field(description="registry name of the SD inpainting weights (models.paths may point it elsewhere)")
    prompt: str = Field(description="sd: the prompt; a known character's description is appended")
    negative_prompt: str
    steps: int = Field(ge=1, le=200)
    guidance: float = Field(ge=0)
    resolution: int = Field(ge=64, le=2048, multiple_of=8, description="sd: long side of the canvas the crop is resized to")


class EnhanceSettings(Section):
    backend: Literal["auto", "spandrel", "opencv", "none"] = Field(
        description="auto = the spandrel model on CUDA when its weights are found, else opencv; none = off")
    earlier_values: ClassVar[dict[str, dict[Any, Any]]] = _FALLBACK_WAS_BOOLEAN
    fallback: Literal["none", "auto", "opencv"] = Field(
        description="spandrel: weights or torch missing -> none = error, auto/opencv = opencv, written in the report")
    sr_model: str = Field(description="registry name of the super-resolution weights (models.paths may point it elsewhere)")
    device: Literal["auto", "cpu", "cuda"]
    half: bool = Field(description="fp16 on CUDA where the architecture supports it")
    tile: int = Field(ge=0, description="input tile size in px for big images (0 = whole image)")
    tile_pad: int = Field(ge=0, description="px of context around each tile (covers the model's receptive field)")
    max_scale: float = Field(ge=1, le=8, description="largest enlargement of a crop")
    cpu_max_scale: float = Field(ge=1, le=8, description="opencv: largest enlargement (it adds no detail)")
    cpu_iterations: int = Field(ge=0, le=10, description="opencv: back-projection passes")
    denoise: float = Field(ge=0, le=30, description="opencv: non-local-means strength before enlarging (0 = off)")
    clahe: float = Field(ge=0, le=10, description="opencv: CLAHE clip limit on luminance (0 = off)")
    min_ssim: float = Field(ge=0, le=1, description="gate: SSIM of the result shrunk back vs the source below this = rejected")
    scale: float = Field(ge=1, le=8, description="standalone folders: enlargement of every image")


class EmbedSettings(Section):
    # color | clip | siglip | dinov2 | auto, or two joined by "+" (e.g. "clip+dinov2")
    backend: str
    clip_model: str = Field(description="registry name of the CLIP weights")
    siglip_model: str
    dinov2_model: str
    batch_size: int = Field(ge=1, le=4096)
    device: Literal["auto", "cpu", "cuda"]
    half: bool = Field(description="fp16 on CUDA")
    # what a missing model does: error (none, the default) or fall back to the color backend
    # (auto or color), recorded in the report
    fallback: Literal["none", "auto", "color"]
    background: list[int] = Field(min_length=3, max_length=3, description="RGB the cut-outs are composited on")
    color_size: int = Field(ge=32, le=512, description="color backend: cut-outs are resized to fit this square")
    # divide out each shot's light (grey-edge on the shot's background plates) before embedding;
    # auto = for the colour-based backend only
    shot_light: Literal["auto", "on", "off"]  # a bare YAML on/off comes back as its word (Section)


class ClusterSettings(Section):
    min_cluster_size: int = Field(ge=2, description="upper bound; see min_cluster_fraction")
    min_cluster_fraction: float = Field(ge=0, le=1, description="min cluster size as a share of the instances (short films)")
    track_split: float = Field(ge=0, le=2, description="cut a track whose members are this far apart (cosine, average linkage); 0 = off")
    still: Literal["join", "keep"] = Field(description="join: tracks still in every frame only join a moving character")
    min_samples: int = Field(ge=1)
    pca_dim: int = Field(ge=0, description="0 = cluster the full-dimensional embeddings")
    selection: Literal["eom", "leaf"]
    merge_similarity: float = Field(ge=-1, le=1, description="merge clusters whose centroids are this similar (1 = never)")
    track_aware: bool
    unit: Literal["track", "instance"] = Field(description="what is clustered: tracks (pooled) or lone instances")
    part_merge: float = Field(ge=0, le=1, description="a cluster this share of whose instances touch another's joins it (0 = off)")
    attach_noise: float = Field(ge=0, le=3, description="a noise track within this x a cluster's spread (and no other's) joins it (0 = off)")
    track_join: float = Field(ge=-1, le=1, description="join two clusters whose most similar tracks reach this cosine (1 = off)")
    attach_margin: float = Field(ge=0, le=10, description="then a noise track joins the cluster of its nearest track when every other cluster is this x as far (<= 1 = off)")
    attach_rounds: int = Field(ge=1, le=10, description="attach_margin rounds: tracks that joined count in the next round")
    second_look: float = Field(ge=0, le=1, description="then HDBSCAN on the noise alone: a group of this x min_cluster_size, seen in 2+ shots and as tight as a typical cluster, becomes a cluster (0 = off)")
    elsewhere_share: float = Field(ge=0, le=1, description="last, a part of a track at most this share of its cluster that lies nearer another cluster's centre than its own goes to noise (0 = off)")
    metric: Literal["none", "linear", "mlp"] = Field(description="a metric learned from the film's own tracks and frames")
    turbo_threshold: int = Field(ge=1000, description="from this many instances on, the subsample path runs")
    turbo_sample: int = Field(ge=1000)
    turbo_pca_dim: int = Field(ge=2)
    name_similarity: float = Field(ge=-1, le=1, description="cosine bound for naming from references")
    characters_dir: str = Field(description="extra folder of <name>.yaml character specs (standalone)")
    copy_mode: Literal["copy", "hardlink"]
    contact_sheet_max: int = Field(ge=1)
    thumb_size: int = Field(ge=16, le=512)

    added_fields: ClassVar[dict[str, Any]] = {"attach_margin": 0.0, "attach_rounds": 1, "second_look": 0.0,
                                              "elsewhere_share": 0.0}


class ReviewSettings(Section):
    host: str
    port: int = Field(ge=0, le=65535)
    token: str
    page_size: int = Field(ge=1, le=5000)
    thumb_size: int = Field(ge=32, le=512)
    split_k: int = Field(ge=2)


class TrainSettings(Section):
    """LoRA training (the built-in diffusers+peft trainer, or kohya sd-scripts)."""

    added_fields: ClassVar[dict[str, Any]] = {
        "preset": "", "num_processes": 1, "timestep_sampling": "flux_shift", "sigmoid_scale": 1.0,
        "discrete_flow_shift": 3.1582, "guidance_scale": 1.0, "quantize_base": "none",
    }
    # one name with dataset.min_bucket / max_bucket (and sd-scripts' min_bucket_reso)
    earlier_names: ClassVar[dict[str, str]] = {"min_bucket": "bucket_min", "max_bucket": "bucket_max"}

    preset: str = Field(description="training preset layered under project.yaml (config/presets/NAME.yaml); empty = none")
    engine: Literal["builtin", "kohya"]
    num_processes: int = Field(ge=1, le=64, description="data-parallel processes (GPUs) under `accelerate launch`")
    sd_scripts: str = Field(description="kohya engine: the sd-scripts checkout")
    base_model: str = Field(description="diffusers folder, single .safetensors file, registry name or hub id; empty = not configured")
    base_model_config: str = Field(description="single-file base model: diffusers folder or hub id holding its configs; empty = auto")
    family: Literal["auto", "sd15", "sdxl", "flux"]
    output_name: str = Field(description="file name stem of the LoRA; empty = the dataset folder's name")
    trigger: str = Field(description="trigger word; empty = from the dataset's metadata.json")
    # network
    network_dim: int = Field(ge=1, le=1024)
    network_alpha: float = Field(gt=0)
    train_text_encoder: bool
    # optimisation
    optimizer: Literal["adamw", "adamw8bit", "prodigy"]
    unet_lr: float = Field(gt=0)
    text_encoder_lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    lr_scheduler: Literal["constant", "cosine", "cosine_with_restarts"]
    lr_warmup_steps: int = Field(ge=0)
    lr_restarts: int = Field(ge=1, description="cosine_with_restarts: number of cycles")
    max_grad_norm: float = Field(ge=0, description="0 = no clipping")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    repeats: int = Field(ge=1, description="times each image is seen per epoch")
    min_snr_gamma: float = Field(ge=0, description="0 = off")
    noise_offset: float = Field(ge=0)
    # Flux.1 (flow matching; ignored by SD 1.x / SDXL)
    timestep_sampling: Literal["flux_shift", "shift", "sigmoid", "logit_normal", "uniform"] = Field(
        description="Flux: how noise levels are drawn (sd-scripts' --timestep_sampling)")
    sigmoid_scale: float = Field(gt=0, description="Flux: scale of the normal draw before the sigmoid")
    discrete_flow_shift: float = Field(gt=0, description="Flux: the shift of timestep_sampling = shift")
    guidance_scale: float = Field(ge=0, description="Flux [dev]: the guidance embedding's value while training")
    quantize_base: Literal["none", "int8", "nf4"] = Field(
        description="Flux: load the transformer 8-bit or NF4 with bitsandbytes (CUDA only)")
    # data
    resolution: int = Field(ge=8, le=4096)
    enable_buckets: bool
    min_bucket: int = Field(ge=8, description="smallest bucket side, px (as dataset.min_bucket; was train.bucket_min)")
    max_bucket: int = Field(ge=8, description="largest bucket side, px (was train.bucket_max)")
    bucket_step: int = Field(ge=8)
    shuffle_caption: bool
    keep_tokens: int = Field(ge=0, description="caption tokens (comma-separated) kept in front when shuffling")
    caption_dropout: float = Field(ge=0, le=1, description="probability of training a step with an empty caption")
    flip_aug: bool
    color_aug: bool
    alpha_mask: bool = Field(description="weight the loss by the image's alpha channel")
    cache_latents: bool
    # memory / precision
    gradient_checkpointing: bool
    mixed_precision: Literal["no", "fp16", "bf16"]
    allow_cpu: bool = Field(description="allow a real-size model on the CPU (very slow)")
    # outputs
    save_precision: Literal["fp16", "bf16", "fp32"] = Field(description="dtype of the saved LoRA weights (sd-scripts' default fp16)")
    save_every_n_epochs: int = Field(ge=1)
    save_state_every_n_steps: int = Field(ge=0, description="resume state between epochs; 0 = at saves only")
    keep_states: int = Field(ge=1, description="resume states kept on disk, newest first (both engines)")
    sample_every_n_epochs: int = Field(ge=0, description="0 = no samples")
    sample_prompts: str = Field(description="prompt file (JSON or one prompt a line); empty = the package's test prompts")
    sample_steps: int = Field(ge=1)
    sample_cfg: float = Field(ge=0)
    sample_seeds: list[int]
    tensorboard: bool


class EvaluateSettings(Section):
    """Checkpoint evaluation: images per checkpoint, metrics, the pick."""

    added_fields: ClassVar[dict[str, Any]] = {"dataset": ""}

    dataset: str = Field(description="dataset of the identity reference; empty = training_data/<run name> in a "
                                     "project, else the dataset the run was trained on")
    prompts: str = Field(description="prompt JSON; empty = the package's prompts/3d_character_test.json")
    base_model: str = Field(description="empty = train.base_model")
    scheduler: Literal["dpm++", "euler", "euler_a", "ddim", "pndm"]
    steps: int = Field(ge=1)
    cfg: float = Field(ge=0)
    seeds: list[int]
    width: int = Field(ge=0, description="0 = the base model's native size")
    height: int = Field(ge=0)
    strengths: list[float] = Field(description="LoRA strengths to sweep")
    clip_model: str = Field(description="registry name or folder of the CLIP model used for scores")
    reference_images: int = Field(ge=1, description="dataset images used as the identity reference")
    weights: dict[str, float] = Field(description="best-checkpoint score: weight per metric")


class CharacterSpec(BaseModel):
    """``characters/<name>.yaml``: who a character is, and settings only for them.

    A user-written document rather than a settings section, so its fields have defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    trigger: str = Field("", description="trigger word; empty = the name")
    description: str = ""
    references: list[str] = Field(default_factory=list, description="images or folders of this character")
    negative: bool = Field(False, description="references of what is NOT a character (noise)")
    clothed: bool | None = Field(None, description="wears clothes (captions may say 'wearing ...'); "
                                                   "empty = from the description, else from its colours")
    settings: dict = Field(default_factory=dict, description="section overrides for this character")

    @property
    def trigger_word(self) -> str:
        return self.trigger or self.name




class CaptionSettings(Section):
    backend: Literal["template", "blip", "florence2", "qwen2_5_vl"]
    model: str = Field(description="registry name of the backend's weights; '' = the backend's default")
    character: str = Field(description="standalone: the character's name; '' = the input folder's name")
    trigger: str = Field(description="standalone: trigger word; '' = characters/<name>.yaml or the name")
    prefix: str = Field(description="style words after the trigger word, e.g. 'a 3d animated character'")
    max_tokens: int = Field(ge=8, le=512, description="text-encoder tokens, BOS/EOS included (CLIP: 77)")
    tokenizer: str = Field(description="tokenizer folder or registry name used to count tokens; '' = estimate")
    min_field_confidence: float = Field(ge=0, le=1, description="fields less sure than this stay out of the text")
    ban_words: list[str] = Field(description="words and phrases removed from every caption")
    style_words: list[str] = Field(description="words that pull toward 2D, removed (3D profile)")
    field_order: list[str] = Field(description="order of the fields after the prefix; earlier = kept when trimming")
    alpha_threshold: float = Field(ge=0, le=1, description="alpha above which a cut-out pixel is the character")
    palette_colors: int = Field(ge=1, le=8, description="colour clusters of the masked palette")
    palette_min_share: float = Field(gt=0, le=1, description="a colour must cover this share of the outfit")
    batch_size: int = Field(ge=1)
    device: str = Field(description="auto | cpu | cuda | cuda:N")
    load_in_4bit: bool = Field(description="qwen2_5_vl on CUDA: 4-bit weights via bitsandbytes")
    max_new_tokens: int = Field(ge=8)
    retries: int = Field(ge=0, le=5, description="VLM: re-asks after an unparseable answer")
    fallback: Literal["none", "auto", "template"] = Field(
        description="a captioner whose weights or packages are missing: none = error, auto/template = template")


class DatasetSettings(Section):
    added_fields: ClassVar[dict[str, Any]] = {"min_image_side": 0, "use_enhanced": False, "scenery_check": False,
                                              "duplicate_distance": 255.0, "colour_check": False,
                                              "join_parts": False, "cut_foreign": False, "max_loose_outline": 1.0}
    character: str = Field(description="project: only this character ('' = all); folder input: its name")
    caption_prefix: str = Field(description="words after the trigger word in every caption")
    captions_dir: str = Field(description="folder input: .txt captions by stem ('' = beside the images)")
    target_size: int = Field(ge=1, description="images per character")
    min_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        description="a character with fewer images that can be written gets no dataset; auto: ceil(shots / 4) "
                    "between 4 and 8 (a short film's characters get a dataset)")
    scenery_check: bool = Field(description="an unnamed cluster still in nearly every frame (scenery) or read as "
                                            "text gets no dataset (reason not_character:<why>)")
    colour_check: bool = Field(description="with scenery_check: a member whose mask has a piece in colours its "
                                           "cluster's other members lack and another cluster's share, or 15% of "
                                           "it in colours they (nearly) never show, is left out "
                                           "(reason not_one_character:colours)")
    cut_foreign: bool = Field(description="a piece of a mask in colours its cluster mostly lacks, apart in hue "
                                          "from the rest, on its outline and seen alone elsewhere (a held prop or "
                                          "creature), and a part lying apart from the body in another colour (a "
                                          "bit of a character behind), are cut from the image's alpha "
                                          "(metadata.json piece_cut)")
    join_parts: bool = Field(description="members of one frame whose boxes (nearly) touch are parts of one "
                                         "character: one image from their masks' union (the others: reason joined)")
    max_loose_outline: float = Field(ge=0, le=1, description="a member whose mask's outline runs this share or more "
                                     "through one colour on both sides (the matte stopped inside the character or "
                                     "ran on into the set) is left out (reason not_whole:outline); 1 = off")
    small_size: int = Field(ge=1, description="a dataset with fewer images is built but marked small, with a warning")
    max_size: int = Field(ge=1)
    embedding_model: str = Field(description="embeddings table model used for diversity; '' = the most common")
    duplicate_similarity: float = Field(gt=0, le=1, description="identity-embedding cosine above which two may be "
                                        "near-duplicates (see duplicate_distance)")
    duplicate_distance: float = Field(ge=0, le=255, description="...and appearance-signature distance (0-255, the "
                                      "prefilter's measure) under which they are the same picture; 255 = identity alone")
    quality_weight: float = Field(ge=0, le=1, description="0 = pure diversity, 1 = pure quality")
    spread_penalty: float = Field(ge=0, description="penalty per image already taken from the same shot/track")
    truncated_penalty: float = Field(ge=0, le=1, description="quality factor of an instance cut by the frame")
    min_side: int = Field(ge=16, description="instances whose longer side is shorter than this (pixels) are left out")
    resolution: int = Field(ge=64, le=4096, description="base model resolution (512 SD1.5, 1024 SDXL)")
    bucket_step: int = Field(ge=8)
    min_bucket: int = Field(ge=64)
    max_bucket: int = Field(ge=64)
    max_enlarge: float = Field(ge=1, description="no image is enlarged by more than this (plain resampling); "
                                                 "a smaller crop gets a smaller output, or is left out")
    min_image_side: int = Field(ge=0, description="a crop that cannot reach min_bucket is kept at its own size "
                                                  "(kohya bucket_no_upscale) if its shorter side reaches this; "
                                                  "0 = min_bucket (left out)")
    use_enhanced: bool = Field(description="take the enhance stage's crop where plain resampling would be limited")
    fill_holes: float = Field(ge=0, le=1, description="alpha masks: enclosed holes up to this share of the "
                                                      "figure's area are filled (0 = none)")
    max_aspect: float = Field(ge=1, le=4, description="crops wider/taller than this ratio get more context")
    context_margin: float = Field(ge=0, le=2, description="box margin around the character, fraction of its size")
    background: Literal["alpha", "context", "flat", "blur"]
    background_color: list[int] = Field(min_length=3, max_length=3)
    use_deoccluded: bool = Field(description="surroundings from the deocclude stage's filled boxes where it made one")
    image_format: Literal["png", "jpg"]
    flip_aug: bool
    color_aug: bool
    keep_tokens: int = Field(ge=0)
    shuffle_caption: bool
    prune_intrinsic: bool = Field(description="drop traits present in most of a character's captions")
    intrinsic_share: float = Field(gt=0, le=1)
    kohya_layout: bool = Field(description="also write the {repeats}_{name} folder layout")
    base_repeats: int = Field(ge=1, description="repeats of the largest character; others scaled up to balance")
    validation_split: float = Field(ge=0, lt=1)
    regularization: int = Field(ge=0, description="frames without the character in the reg set (0 = none)")
    report: bool
    kind: Literal["character", "background", "all"] = Field(
        description="what is built: character datasets, the background/style dataset from the inpaint "
                    "stage's plates (curation/background.py), or both")
    background_per_shot: int = Field(ge=1, description="background: at most this many plates per shot (spread over it)")
    background_max_hole: float = Field(ge=0, le=1, description="background: plates with more of their area "
                                                               "inpainted than this are left out")
    background_trigger: str = Field(description="background: trigger word ('' = <project>_background)")


# added after a release; kept out of the fingerprint while they hold these (a one-line
# assignment, not in the class body, so it merges beside other helpers' fields)
DatasetSettings.added_fields = {**DatasetSettings.added_fields, "kind": "character", "background_per_shot": 3,
                                "background_max_hole": 0.35, "background_trigger": ""}


class Settings(Section):
    """Every section, validated."""

    project: ProjectSettings
    runner: RunnerSettings
    models: ModelsSettings
    extract: ExtractSettings
    train: TrainSettings
    evaluate: EvaluateSettings
    segment: SegmentSettings
    prefilter: PrefilterSettings
    inpaint: InpaintSettings
    deocclude: DeoccludeSettings
    enhance: EnhanceSettings
    embed: EmbedSettings
    cluster: ClusterSettings
    review: ReviewSettings
    caption: CaptionSettings
    dataset: DatasetSettings
