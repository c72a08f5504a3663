"""The built-in LoRA trainer (diffusers + peft + accelerate), as numbered steps::

    1. check inputs        dataset, base model (exists, family), device, settings — nothing loaded yet
    2. load models         tokenizers, text encoders, VAE, U-Net, DDPM noise scheduler
                           (Flux: text embeddings cached first, then the transformer, see flux_model)
    3. add LoRA            kohya's module set on the U-Net (+ text encoders), rank and alpha
    4. prepare data        buckets, cached latents and alpha masks
    5. optimizer/scheduler AdamW | AdamW8bit | Prodigy; constant | cosine | cosine with restarts
    6. resume              from ``state/latest.json`` when the run was cut short
    7. training loop       min-SNR, noise offset, masked loss, caption shuffle/dropout
    8. save                kohya file per save epoch + final, diffusers format, report

Output folder (``runs/<name>/``): ``<name>-<epoch:06d>.safetensors`` per save epoch and
``<name>.safetensors`` at the end (kohya format), ``diffusers/`` (peft format), ``samples/``,
``state/`` (resume), ``logs/`` (TensorBoard), ``training_results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from animlora.config.schema import ModelsSettings, TrainSettings
from animlora.errors import ConfigError, MissingDependencyError, StageError
from animlora.io.files import atomic_write_json, clean_temp_files
from animlora.training import inputs as ds
from animlora.training.base_model import BaseModelRef, check_family, locate_base_model

log = logging.getLogger("animlora")

StepCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainPlan:
    """What a run will do, known before any model is loaded (printed as the estimate)."""

    dataset: str
    images: int
    buckets: dict[str, int]
    steps_per_epoch: int
    epochs: int
    total_steps: int
    family: str
    base_model: str
    device: str
    mixed_precision: str
    memory_estimate_gb: float | None
    memory_available_gb: float | None
    fits: bool | None
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        mem = ""
        if self.memory_estimate_gb is not None:
            mem = f", ~{self.memory_estimate_gb:.1f} GB GPU memory"
            if self.memory_available_gb is not None:
                mem += f" of {self.memory_available_gb:.1f} GB ({'fits' if self.fits else 'may NOT fit'})"
        return (f"{self.images} images in {len(self.buckets)} bucket(s), {self.steps_per_epoch} steps/epoch × "
                f"{self.epochs} epochs = {self.total_steps} steps on {self.device}{mem}")


@dataclass
class TrainResult:
    output_dir: Path
    final: Path | None
    checkpoints: list[Path]
    steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)  # per step, the whole run (kept across resumes)
    epoch_losses: dict[int, float] = field(default_factory=dict)  # mean loss per epoch, the whole run
    seconds: float = 0.0


class _DropMessage(logging.Filter):
    """Drops the records of one library logger whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


#: library warnings that are not the user's business: (logger, text of the message)
QUIET = (
    # diffusers warns "modules ... should be kept in float32: []" on every ``.to(dtype)`` even when
    # there are none; a non-empty list still shows
    ("diffusers.models.modeling_utils", "should be kept in float32: []"),
    # bitsandbytes ≥ 0.50, imported by peft whenever it is installed, looks for an optional fused
    # CPU 4-bit kernel on CPUs with AVX512-BF16 at import and asks for `pip install kernels` when
    # it is missing; animlora never runs bitsandbytes on the CPU (quantize_base and adamw8bit are
    # CUDA only), and on a CUDA build of torch that kernel cannot load anyway
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
    # LLM.int8 (quantize_base: int8) logs its fp16 cast on every call of every layer: 4232 lines in
    # 4 steps of a full-size Flux on an H200; the plan says it once (flux_settings)
    ("bitsandbytes.autograd._functions", "MatMul8bitLt: inputs will be cast from"),
)


def quiet_library_noise() -> None:
    """Install the filters of :data:`QUIET` (idempotent). Called before the libraries are
    imported: a logger's filter is in place before the library logs through it."""
    for name, text in QUIET:
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.text == text for f in target.filters):
            target.addFilter(_DropMessage(text))


def _real_size(ref: BaseModelRef) -> bool:
    """A real SD/SDXL U-Net or Flux transformer (not a tiny test one), known from its config
    without loading it."""
    if ref.family == "flux":
        from animlora.training.flux import is_real_size

        return ref.kind != "folder" or is_real_size(ref.path)
    if ref.kind == "single_file" and ref.path is not None and ref.path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(ref.path), framework="pt") as handle:
            key = "model.diffusion_model.input_blocks.0.0.weight"
            return key not in handle.keys() or handle.get_slice(key).get_shape()[0] >= 320  # noqa: SIM118
    if ref.kind != "folder" or ref.path is None:
        return True
    try:
        config = json.loads((ref.path / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return True
    return max(config.get("block_out_channels", [320])) >= 320


def estimate_memory_gb(family: str, settings: TrainSettings, batch_size: int) -> float:
    """A rough GPU memory estimate (weights + LoRA/optimizer + activations), from measured
    figures of similar trainers: SD 1.5 @512 and SDXL @1024, batch 1."""
    half = settings.mixed_precision in ("fp16", "bf16")
    if family == "flux":
        from animlora.training.flux import estimate_memory_gb as flux_estimate

        return flux_estimate(settings, batch_size)
    if family == "sdxl":
        weights = (2.6 + 0.8) * (2 if half else 4)  # U-Net 2.6B params + text encoders 0.8B
        act = 3.5 if settings.gradient_checkpointing else 14.0
        ref_px = 1024
    else:
        weights = (0.86 + 0.12) * (2 if half else 4)
        act = 1.2 if settings.gradient_checkpointing else 4.5
        ref_px = 512
    act *= batch_size * (settings.resolution / ref_px) ** 2
    if settings.train_text_encoder:
        act *= 1.15
    lora = 0.1 * settings.network_dim / 32 * (2 if family == "sdxl" else 1)
    vae = 0.0 if settings.cache_latents else (0.6 if family == "sdxl" else 0.4) * batch_size
    return round(weights + lora + act + vae + 0.8, 1)  # + CUDA context


class LoraTrainer:
    """Train one LoRA from a dataset folder. One instance, one run."""

    def __init__(self, settings: TrainSettings, models: ModelsSettings, *, seed: int,
                 on_step: StepCallback | None = None) -> None:
        self.settings = settings
        self.models = models
        self.seed = seed
        self.on_step = on_step
        quiet_library_noise()  # before check_inputs or train import peft (and with it bitsandbytes)

    # -- 1. check inputs ------------------------------------------------------------------
    def check_inputs(self, dataset_dir: Path, base_model: str) -> tuple[ds.TrainingDataset, BaseModelRef, TrainPlan]:
        s = self.settings
        if s.min_bucket > s.max_bucket:
            raise ConfigError(f"train.min_bucket ({s.min_bucket}) is larger than train.max_bucket ({s.max_bucket})")
        if s.cache_latents and (s.flip_aug or s.color_aug):
            raise ConfigError("train.cache_latents cannot be combined with flip_aug/color_aug "
                              "(the cached latents would never change); turn one off")
        data = ds.load_dataset(dataset_dir, s.trigger)
        ref = locate_base_model(base_model, self.models)
        check_family(ref, s.family)
        device = self._device()
        warnings = []
        if ref.family == "flux":
            from animlora.training.flux_settings import flux_settings

            s, notes = flux_settings(s, device)
            self.settings = s
            warnings += notes
        elif s.quantize_base != "none":
            warnings.append(f"train.quantize_base = {s.quantize_base} applies to Flux only; ignored for {ref.family}")
        if device == "cpu" and _real_size(ref) and not s.allow_cpu:
            raise StageError(
                f"no CUDA GPU found, and {ref.given} is a full-size {ref.family} model: training it on the CPU "
                "takes days. Use a machine with a GPU, or pass --allow-cpu (train.allow_cpu=true) to do it anyway"
            )
        if s.optimizer == "adamw8bit":
            if device != "cuda":
                raise ConfigError("train.optimizer = adamw8bit needs a CUDA GPU (bitsandbytes); use adamw or prodigy")
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError("bitsandbytes", "train8bit", "the adamw8bit optimizer") from exc
        if s.optimizer == "prodigy":
            try:
                import prodigyopt  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError("prodigyopt", "train", "the prodigy optimizer") from exc
        buckets_of = self._buckets_of(data)
        per_epoch = ds.steps_per_epoch(buckets_of, s.batch_size, s.repeats)
        counts: dict[str, int] = {}
        for b in buckets_of:
            counts[f"{b[0]}x{b[1]}"] = counts.get(f"{b[0]}x{b[1]}", 0) + 1
        mem = avail = None
        fits = None
        if device == "cuda" or _real_size(ref):
            mem = estimate_memory_gb(ref.family, s, s.batch_size)
        if device == "cuda":
            import torch

            avail = torch.cuda.get_device_properties(0).total_memory / 1024**3
            fits = mem is not None and mem <= avail * 0.95
            if not fits:
                nf4 = "set train.quantize_base = nf4, " if ref.family == "flux" and s.quantize_base != "nf4" else ""
                warnings.append(f"estimated {mem:.1f} GB > {avail:.1f} GB: {nf4}enable train.gradient_checkpointing, "
                                "cache_latents, or lower batch_size / resolution / network_dim")
        if s.optimizer == "prodigy" and s.unet_lr < 0.1:
            warnings.append(f"Prodigy adapts the step size itself and expects lr ≈ 1.0 (train.unet_lr = {s.unet_lr})")
        plan = TrainPlan(
            dataset=str(data.root), images=len(data.items), buckets=counts, steps_per_epoch=per_epoch,
            epochs=s.epochs, total_steps=per_epoch * s.epochs, family=ref.family, base_model=ref.given,
            device=device, mixed_precision=self._precision(device), memory_estimate_gb=mem,
            memory_available_gb=round(avail, 1) if avail else None, fits=fits, warnings=tuple(warnings),
        )
        return data, ref, plan

    def _device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _precision(self, device: str) -> str:
        # half precision on the CPU is slower and less exact than fp32: ignore it there
        return self.settings.mixed_precision if device == "cuda" else "no"

    def _buckets_of(self, data: ds.TrainingDataset) -> list[tuple[int, int]]:
        s = self.settings
        if not s.enable_buckets:
            return [(s.resolution, s.resolution)] * len(data.items)
        buckets = ds.make_buckets(s.resolution, s.min_bucket, s.max_bucket, s.bucket_step)
        from animlora.buckets import bucket_for

        return [bucket_for(item.width, item.height, buckets, s.bucket_step) for item in data.items]

    # -- the whole procedure ----------------------------------------------------------------
    def train(self, dataset_dir: Path, output_dir: Path, base_model: str, *, output_name: str = "",
              fresh: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        """Run steps 1–8; resumes from ``output_dir/state`` unless ``fresh``.
        ``stop_after_steps`` ends the session early (benchmarks), saving nothing extra."""
        import torch

        started = time.monotonic()
        quiet_library_noise()
        s = self.settings
        data, ref, plan = self.check_inputs(Path(dataset_dir), base_model)
        s = self.settings  # Flux: its effective settings (see flux_settings)
        name = output_name or s.output_name or data.name
        output_dir = Path(output_dir)
        # under `accelerate launch` (train.num_processes > 1) every process runs this; only the
        # first writes files (checkpoints, states, report), the others read the same state
        main = int(os.environ.get("RANK", "0")) == 0
        output_dir.mkdir(parents=True, exist_ok=True)
        if main:
            clean_temp_files(output_dir)
        state_dir = output_dir / "state"
        log.info("train: %s", plan.describe())
        for warning in plan.warnings:
            log.warning("train: %s", warning)
        fingerprint = self._fingerprint(data, ref)

        from animlora.training import state as st

        if fresh and main:  # start over: drop this run's state, checkpoints and loss curves (only files the trainer writes)
            import shutil

            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(output_dir / "logs" / "train", ignore_errors=True)
            for old in [*output_dir.glob(f"{name}-*.safetensors"), output_dir / f"{name}.safetensors"]:
                old.unlink(missing_ok=True)
        saved = None if fresh else st.latest_state(state_dir)
        if saved is not None and saved.info.get("fingerprint") != fingerprint:
            raise StageError(f"{output_dir}: holds a run with other settings or data; "
                             "pass --force to start over (its state is replaced) or choose another output folder")

        # 2. load models
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DataLoaderConfiguration, set_seed

        from animlora.training.base_model import load_components

        # accelerate keeps one state per process and refuses a second run with another precision
        # (a bf16 Flux run after an fp16 SD one, in tests or a library caller): start it afresh,
        # keeping the distributed (partial) state that `accelerate launch` set up
        AcceleratorState._reset_state()
        if plan.device == "cuda":
            # cuDNN's fastest convolution backward kernels add in a varying order: with them a
            # resumed run (and two fresh runs) differ in the last bits. The deterministic ones
            # keep kill -9 + resume bit-identical on the GPU as on the CPU.
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        accelerator = Accelerator(
            mixed_precision=plan.mixed_precision, cpu=plan.device == "cpu",
            log_with="tensorboard" if s.tensorboard else None, project_dir=str(output_dir / "logs"),
            # each global batch is split over the processes (train_step), so the LR schedule
            # steps once per optimizer step, as with one process
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        set_seed(self.seed)
        device = accelerator.device
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(plan.mixed_precision, torch.float32)
        from animlora.training.network import TEXT_ENCODER_TARGETS, UNET_TARGETS, add_lora, lora_parameters

        te_params: list[Any] = []
        if ref.family == "flux":  # 2.–3. text embeddings cached, encoders dropped, transformer + LoRA
            from animlora.training import flux_model

            texts = flux_model.texts_to_cache(self, [item.caption for item in data.items], data.trigger)
            comp, unet_params = flux_model.prepare(self, ref, texts, device, weight_dtype, s.quantize_base)
            comp.vae.requires_grad_(False)
        else:
            comp = load_components(ref, config=s.base_model_config)
            # 3. add LoRA (seeded: the down matrices' init is random)
            torch.manual_seed(self.seed)
            comp.vae.requires_grad_(False)
            unet_params = add_lora(comp.unet, UNET_TARGETS, s.network_dim, s.network_alpha)
            if s.train_text_encoder:
                for encoder in comp.text_encoders:
                    te_params += add_lora(encoder, TEXT_ENCODER_TARGETS, s.network_dim, s.network_alpha)
            else:
                for encoder in comp.text_encoders:
                    encoder.requires_grad_(False)
            # frozen weights in the compute dtype, LoRA weights in fp32 (stable updates)
            comp.unet.to(device, dtype=weight_dtype)
            for encoder in comp.text_encoders:
                encoder.to(device, dtype=weight_dtype)
            for p in unet_params + te_params:
                p.data = p.data.float()
            if s.gradient_checkpointing:
                comp.unet.enable_gradient_checkpointing()
                if s.train_text_encoder:
                    for encoder in comp.text_encoders:
                        if hasattr(encoder, "activation_checkpointing_enable"):  # transformers ≥ 5.x
                            encoder.activation_checkpointing_enable({"use_reentrant": False})
                        else:
                            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

        # 4. prepare data: buckets, cached latents and masks
        buckets_of = self._buckets_of(data)
        comp.vae.to(device, dtype=torch.float32)  # fp16 SDXL VAE overflows; it only encodes
        cache = self._encode_all(comp.vae, data, buckets_of, device) if s.cache_latents else None
        if cache is not None:
            comp.vae.to("cpu")  # not needed on the GPU any more (sampling moves it back)

        # 5. optimizer and LR scheduler
        groups = [{"params": unet_params, "lr": s.unet_lr}]
        if te_params:
            groups.append({"params": te_params, "lr": s.text_encoder_lr})
        optimizer = self._optimizer(groups)
        from diffusers.optimization import get_scheduler

        from animlora.training.metadata import lr_scheduler_name

        sched_name = lr_scheduler_name(s)  # the name the kohya engine gives sd-scripts too
        lr_scheduler = get_scheduler(sched_name, optimizer, num_warmup_steps=s.lr_warmup_steps,
                                     num_training_steps=plan.total_steps, num_cycles=s.lr_restarts)
        # frozen text encoders are not wrapped for data parallelism (DDP refuses a module with
        # nothing to train); one process prepares them as before
        wrapped = comp.text_encoders if s.train_text_encoder or accelerator.num_processes == 1 else ()
        prepared = accelerator.prepare(comp.unet, *wrapped, optimizer, lr_scheduler)
        unet = prepared[0]
        encoders = tuple(prepared[1 : 1 + len(wrapped)]) if wrapped else tuple(comp.text_encoders)
        optimizer, lr_scheduler = prepared[-2], prepared[-1]
        trainable = {f"unet.{k}": v for k, v in lora_parameters(accelerator.unwrap_model(unet)).items()}
        if s.train_text_encoder:
            for i, encoder in enumerate(encoders):
                trainable.update({f"te{i}.{k}": v for k, v in lora_parameters(accelerator.unwrap_model(encoder)).items()})

        # 6. resume
        step = 0
        if saved is not None:
            st.load_state(saved, weights=trainable, optimizer=optimizer, scheduler=lr_scheduler,
                          scaler=accelerator.scaler)
            step = saved.step
            log.info("train: resumed from step %d (%s)", step, saved.folder)
        resumed_from = step
        # the loss of every step before this session, saved with the state it resumes from
        history: list[float] = [float(v) for v in (saved.info.get("losses") or [])[:step]] if saved else []
        started_at = float(saved.info.get("started_at", time.time())) if saved else time.time()
        run_meta = self._run_metadata(data, ref, plan, comp, fingerprint, started_at)
        if s.tensorboard:
            accelerator.init_trackers("train", config={k: v for k, v in s.model_dump().items()
                                                       if isinstance(v, int | float | str | bool)})

        # 7. training loop
        result = TrainResult(output_dir, None, [], step, resumed_from, losses=history)
        checkpoints = sorted(output_dir.glob(f"{name}-*.safetensors"))
        context = _LoopContext
        if comp.family == "flux":
            from animlora.training.flux_model import FluxLoopContext as context
        ctx = context(self, accelerator, comp, unet, encoders, optimizer, lr_scheduler, data, buckets_of,
                           cache, device, weight_dtype, trainable, name, ref, plan, fingerprint, history, run_meta,
                           started_at)
        start_epoch = step // plan.steps_per_epoch
        stopped = False
        for epoch in range(start_epoch, s.epochs):
            batches = ds.epoch_batches(buckets_of, batch_size=s.batch_size, repeats=s.repeats, seed=self.seed,
                                       epoch=epoch, flip=s.flip_aug)
            for index, batch in enumerate(batches):
                if epoch * plan.steps_per_epoch + index < step:
                    continue  # done before the resume
                loss = ctx.train_step(batch, step)
                step += 1
                history.append(loss)
                lr = lr_scheduler.get_last_lr()[0]
                if s.tensorboard:
                    accelerator.log({"loss": loss, "lr": lr}, step=step)
                if self.on_step is not None:
                    self.on_step(step, plan.total_steps, {"loss": loss, "lr": lr, "epoch": epoch + 1})
                if s.save_state_every_n_steps and step % s.save_state_every_n_steps == 0 and step < plan.total_steps:
                    ctx.save_state(step, epoch)
                if stop_after_steps is not None and step - resumed_from >= stop_after_steps:
                    stopped = True
                    break
            if stopped:
                break
            # 8. save (per epoch)
            done_epoch = epoch + 1
            if done_epoch % s.save_every_n_epochs == 0 or done_epoch == s.epochs:
                checkpoints.append(ctx.save_checkpoint(output_dir / f"{name}-{done_epoch:06d}.safetensors", step, done_epoch))
                ctx.save_state(step, done_epoch)
            if s.sample_every_n_epochs and done_epoch % s.sample_every_n_epochs == 0 and main:
                ctx.sample(output_dir / "samples" / f"epoch_{done_epoch:06d}")
        if not stopped:
            # 8. save (final): the kohya file users load, and the diffusers/peft format
            result.final = ctx.save_checkpoint(output_dir / f"{name}.safetensors", step, s.epochs)
            from animlora.training.kohya_format import save_diffusers, save_dtype

            if main:
                save_diffusers(output_dir / "diffusers", accelerator.unwrap_model(unet),
                               tuple(accelerator.unwrap_model(e) for e in encoders) if s.train_text_encoder else (),
                               comp.family, dtype=save_dtype(s.save_precision))
            accelerator.wait_for_everyone()
        if s.tensorboard:
            accelerator.end_training()
        result.steps = step
        result.checkpoints = sorted(set(checkpoints))
        result.epoch_losses = epoch_means(history, plan.steps_per_epoch)
        result.seconds = time.monotonic() - started
        if not stopped and main:
            self._report(output_dir, plan, result, data)
        return result

    def _fingerprint(self, data: ds.TrainingDataset, ref: BaseModelRef) -> str:
        from animlora.pipeline.stage import digest

        # the fields that change what is trained (not where samples go or how often they are made)
        keep = {k: v for k, v in self.settings.named_as_before(self.settings.model_dump()).items()
                if k not in ("sample_every_n_epochs", "sample_prompts", "sample_steps", "sample_cfg", "sample_seeds",
                             "tensorboard", "allow_cpu", "num_processes", "save_state_every_n_steps", "keep_states", "output_name", "engine", "sd_scripts",
                             "base_model", "save_precision")}
        if ref.family != "flux":  # Flux-only settings do not change what SD 1.x / SDXL train
            for flux_only in ("timestep_sampling", "sigmoid_scale", "discrete_flow_shift", "guidance_scale",
                              "quantize_base"):
                keep.pop(flux_only, None)
        return digest(sorted(keep.items()), data.content_hash, ref.given, self.seed)

    def recipe(self, data: ds.TrainingDataset) -> dict[str, Any]:
        """What this trainer does with these settings, in engine-neutral terms (the kohya engine's
        files read back by ``sd_scripts.kohya_recipe`` must say the same)."""
        from animlora.training.metadata import OPTIMIZERS as NAMES
        from animlora.training.metadata import lr_scheduler_name, optimizer_kwargs
        from animlora.training.sampling import SAMPLE_SAMPLER, load_prompts

        s = self.settings
        prompts = load_prompts(s.sample_prompts or None, data.trigger).prompts if s.sample_every_n_epochs else ()
        return {
            "network_dim": s.network_dim, "network_alpha": float(s.network_alpha),
            "train_text_encoder": s.train_text_encoder, "optimizer": NAMES[s.optimizer][0],
            "optimizer_args": optimizer_kwargs(s), "unet_lr": s.unet_lr,
            "text_encoder_lr": s.text_encoder_lr if s.train_text_encoder else None,
            "lr_scheduler": lr_scheduler_name(s), "lr_warmup_steps": s.lr_warmup_steps,
            "lr_cycles": s.lr_restarts if s.lr_scheduler == "cosine_with_restarts" else 1,
            "max_grad_norm": s.max_grad_norm, "epochs": s.epochs, "batch_size": s.batch_size, "repeats": s.repeats,
            "min_snr_gamma": s.min_snr_gamma, "noise_offset": s.noise_offset, "resolution": s.resolution,
            "enable_buckets": s.enable_buckets, "min_bucket": s.min_bucket, "max_bucket": s.max_bucket,
            "bucket_step": s.bucket_step, "bucket_upscale": True, "random_crop": False,  # ds.load_pixels
            "shuffle_caption": s.shuffle_caption, "keep_tokens": s.keep_tokens, "caption_dropout": s.caption_dropout,
            "caption_tag_dropout": 0.0, "flip_aug": s.flip_aug, "color_aug": s.color_aug, "alpha_mask": s.alpha_mask,
            "captions": {str(item.image): {"caption": item.caption} for item in data.items},
            "cache_latents": s.cache_latents, "gradient_checkpointing": s.gradient_checkpointing,
            "mixed_precision": s.mixed_precision, "seed": self.seed, "save_every_n_epochs": s.save_every_n_epochs,
            "save_precision": s.save_precision, "sample_every_n_epochs": s.sample_every_n_epochs,
            "sample_sampler": SAMPLE_SAMPLER if s.sample_every_n_epochs else None,
            "samples": [{"prompt": p.prompt, "negative": p.negative, "seed": seed, "steps": s.sample_steps,
                         "cfg": s.sample_cfg, "size": [s.resolution, s.resolution]}
                        for p in prompts for seed in s.sample_seeds],
        }

    def _run_metadata(self, data: ds.TrainingDataset, ref: BaseModelRef, plan: TrainPlan, comp: Any,
                      fingerprint: str, started_at: float) -> dict[str, str]:
        """What sd-scripts records about a run, once (the base model's hashes are read once)."""
        from animlora.training.metadata import flux_metadata, run_metadata

        extra = flux_metadata(self.settings, comp.unet) if comp.family == "flux" else {}
        return run_metadata(
            self.settings, captions=[item.caption for item in data.items], dataset_name=data.name, family=ref.family,
            base_model=ref.given, base_model_file=ref.path if ref.kind == "single_file" else None, seed=self.seed,
            steps_per_epoch=plan.steps_per_epoch, total_steps=plan.total_steps, buckets=plan.buckets,
            mixed_precision=plan.mixed_precision, session_id=int(fingerprint[:8], 16), started_at=started_at,
            trigger=data.trigger,
        ) | extra

    def _optimizer(self, groups: list[dict[str, Any]]) -> Any:
        import torch

        from animlora.training.metadata import optimizer_kwargs

        kwargs = optimizer_kwargs(self.settings)
        if self.settings.optimizer == "adamw8bit":
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, **kwargs)
        if self.settings.optimizer == "prodigy":
            from prodigyopt import Prodigy

            return Prodigy(groups, **kwargs)
        return torch.optim.AdamW(groups, **kwargs)

    def _encode_all(self, vae: Any, data: ds.TrainingDataset, buckets_of: list, device: Any) -> list[tuple[Any, Any, tuple]]:
        """Latents (VAE sample with a per-image seed), alpha masks and crop offsets, once."""
        out = []
        for index, item in enumerate(data.items):
            out.append(_encode(vae, item, buckets_of[index], False, device, self.seed, index))
        return out

    def _report(self, output_dir: Path, plan: TrainPlan, result: TrainResult, data: ds.TrainingDataset) -> None:
        atomic_write_json(output_dir / "training_results.json", {
            "status": "done",
            "plan": asdict(plan),
            "settings": self.settings.model_dump(mode="json"),
            "seed": self.seed,
            "trigger": data.trigger,
            "dataset_hash": data.content_hash,
            "steps": result.steps,
            "resumed_from_step": result.resumed_from,
            "epoch_loss": {str(k): v for k, v in result.epoch_losses.items()},
            "loss": result.losses,  # per step, the whole run across resumes
            "checkpoints": [p.name for p in result.checkpoints],
            "final": result.final.name if result.final else None,
            "seconds": round(result.seconds, 2),
        })


def epoch_means(losses: list[float], steps_per_epoch: int) -> dict[int, float]:
    """Mean loss per epoch (1-based) of a per-step loss list."""
    out: dict[int, list[float]] = {}
    for index, loss in enumerate(losses):
        out.setdefault(index // steps_per_epoch + 1, []).append(loss)
    return {epoch: sum(v) / len(v) for epoch, v in out.items()}


def _encode(vae: Any, item: ds.DatasetItem, bucket: tuple[int, int], flip: bool, device: Any, seed: int,
            index: int, color: Any = None) -> tuple[Any, Any, tuple]:
    import torch

    rgb, alpha, crop = ds.load_pixels(item.image, bucket, flip=flip)
    if color is not None:
        rgb = color(rgb)
    pixels = torch.from_numpy(rgb)[None].to(device, torch.float32)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        generator = torch.Generator("cpu").manual_seed(seed * 1_000_003 + index)
        noise = torch.randn(dist.mean.shape, generator=generator).to(device, dist.mean.dtype)
        shift = getattr(vae.config, "shift_factor", None) or 0.0  # Flux's VAE: (z − shift) × scale
        latents = (dist.mean + dist.std * noise - shift) * vae.config.scaling_factor
    return latents[0].cpu(), torch.from_numpy(alpha), crop


@dataclass
class _LoopContext:
    """What one training step needs; keeps ``train`` readable."""

    trainer: LoraTrainer
    accelerator: Any
    comp: Any
    unet: Any
    encoders: tuple
    optimizer: Any
    lr_scheduler: Any
    data: ds.TrainingDataset
    buckets_of: list
    cache: list | None
    device: Any
    weight_dtype: Any
    trainable: dict
    name: str
    ref: BaseModelRef
    plan: TrainPlan
    fingerprint: str
    history: list[float]  # loss per step since step 1 (saved with every state)
    run_meta: dict[str, str]
    started_at: float

    def __post_init__(self) -> None:
        self.state_dir = Path(self.accelerator.project_dir).parent / "state"
        self.s = self.trainer.settings
        self.seed = self.trainer.seed

    # one step ------------------------------------------------------------------------------
    def shard(self, batch: ds.Batch) -> list[int]:
        """The positions of the global batch this process trains on (all of them with one
        process); a process left without one borrows the first, with zero weight."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        return list(range(len(batch.indices)))[rank::world] or [0]

    def batch_tensors(self, batch: ds.Batch, step: int, positions: list[int]) -> tuple[Any, Any, list, list[str]]:
        import torch

        latents, masks, meta = [], [], []
        for j in positions:
            index = batch.indices[j]
            item = self.data.items[index]
            if self.cache is not None:
                lat, mask, crop = self.cache[index]
            else:
                color = _color_jitter(ds.step_rng(self.seed, 3, step, j)) if self.s.color_aug else None
                self.comp.vae.to(self.device)
                lat, mask, crop = _encode(self.comp.vae, item, batch.bucket, batch.flips[j], self.device,
                                          self.seed + step, j, color)
            latents.append(lat)
            masks.append(mask)
            meta.append((item.height, item.width, crop[0], crop[1], batch.bucket[1], batch.bucket[0]))
        captions = [
            ds.process_caption(self.data.items[batch.indices[j]].caption, ds.step_rng(self.seed, 2, step, j),
                               shuffle=self.s.shuffle_caption, keep_tokens=self.s.keep_tokens,
                               dropout=self.s.caption_dropout)
            for j in positions
        ]
        return torch.stack(latents).to(self.device), torch.stack(masks).to(self.device), meta, captions

    def encode_text(self, captions: list[str], meta: list) -> tuple[Any, dict | None]:
        import torch

        ids = [tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids.to(self.device) for tok in self.comp.tokenizers]
        grad = torch.enable_grad() if self.s.train_text_encoder else torch.no_grad()
        with grad:
            if self.comp.family == "sd15":
                return self.encoders[0](ids[0])[0], None
            out1 = self.encoders[0](ids[0], output_hidden_states=True)
            out2 = self.encoders[1](ids[1], output_hidden_states=True)
            embeds = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
            pooled = out2.text_embeds
        time_ids = torch.tensor(meta, dtype=embeds.dtype, device=self.device)
        return embeds, {"text_embeds": pooled, "time_ids": time_ids}

    def train_step(self, batch: ds.Batch, step: int) -> float:
        s = self.s
        loss = self.compute_loss(batch, step)
        self.accelerator.backward(loss)
        if s.max_grad_norm and self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(list(self.trainable.values()), s.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        world = self.accelerator.num_processes
        reported = loss.detach() if world == 1 else self.accelerator.reduce(loss.detach(), reduction="mean")
        value = float(reported.item())
        if not math.isfinite(value):
            raise StageError(f"training diverged at step {step + 1} (loss {value}); lower the learning rate "
                             "or use bf16 instead of fp16")
        return value

    def compute_loss(self, batch: ds.Batch, step: int) -> Any:
        """The batch's loss (ε- or v-prediction, min-SNR, masked); Flux overrides it."""
        import torch
        import torch.nn.functional as F
        from diffusers.training_utils import compute_snr

        s = self.s
        positions = self.shard(batch)
        latents, masks, meta, captions = self.batch_tensors(batch, step, positions)
        scheduler = self.comp.noise_scheduler
        # noise and timesteps drawn for the whole global batch, so each sample gets the same
        # draw however many processes share the batch
        generator = torch.Generator("cpu").manual_seed(self.seed * 7_919 + step)
        shape = (len(batch.indices), *latents.shape[1:])
        noise = torch.randn(shape, generator=generator)
        if s.noise_offset:
            noise += s.noise_offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (shape[0],), generator=generator)
        noise, timesteps = noise[positions].to(self.device), timesteps[positions].to(self.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with self.accelerator.autocast():
            embeds, added = self.encode_text(captions, meta)
            kwargs = {"added_cond_kwargs": added} if added is not None else {}
            pred = self.unet(noisy.to(self.weight_dtype), timesteps, embeds.to(self.weight_dtype), **kwargs).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float(), reduction="none")
        if s.alpha_mask:
            # sd-scripts' apply_masked_loss: the alpha mask, area-downsampled to the latent size
            loss = loss * F.interpolate(masks.float(), size=loss.shape[2:], mode="area")
        loss = loss.mean(dim=[1, 2, 3])
        if s.min_snr_gamma:
            snr = compute_snr(scheduler, timesteps)
            weight = torch.clamp(snr, max=s.min_snr_gamma)
            weight = weight / (snr + 1) if scheduler.config.prediction_type == "v_prediction" else weight / snr
            loss = loss * weight
        return self.shard_loss(loss, batch)

    def shard_loss(self, per_sample: Any, batch: ds.Batch) -> Any:
        """This process's loss from its samples' losses: the batch mean with one process, else
        this shard's share of the global mean (gradient averaging over processes sums them)."""
        world = self.accelerator.num_processes
        if world == 1:
            return per_sample.mean()
        share = 0.0 if len(batch.indices) <= self.accelerator.process_index else world / len(batch.indices)
        return per_sample.sum() * share

    # saving --------------------------------------------------------------------------------
    def _modules(self) -> tuple[Any, tuple]:
        unwrap = self.accelerator.unwrap_model
        encoders = tuple(unwrap(e) for e in self.encoders) if self.s.train_text_encoder else ()
        return unwrap(self.unet), encoders

    def save_checkpoint(self, path: Path, step: int, epoch: int) -> Path:
        from animlora.training.kohya_format import kohya_metadata, save_dtype, save_kohya

        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return path
        state = self.lora_state(save_dtype(self.s.save_precision))
        meta = kohya_metadata(
            family=self.comp.family, base_model=self.ref.given, output_name=self.name, dim=self.s.network_dim,
            alpha=self.s.network_alpha, trigger=self.data.trigger, dataset_hash=self.data.content_hash, steps=step,
            epoch=epoch, num_images=len(self.data.items), resolution=self.s.resolution, unet_lr=self.s.unet_lr,
            text_encoder_lr=self.s.text_encoder_lr if self.s.train_text_encoder else None, seed=self.seed,
            prediction_type=self.comp.noise_scheduler.config.get("prediction_type", "flow"), extra=self.run_meta,
        )
        save_kohya(path, state, meta)
        log.info("train: saved %s (epoch %d, step %d)", path.name, epoch, step)
        self.accelerator.wait_for_everyone()
        return path

    def lora_state(self, dtype: Any) -> dict[str, Any]:
        """The kohya state dict of the LoRA as it is now."""
        from animlora.training.kohya_format import kohya_state_dict

        unet, encoders = self._modules()
        return kohya_state_dict(unet, encoders, self.comp.family, dtype=dtype)

    def save_state(self, step: int, epoch: int) -> None:
        from animlora.training.state import save_state

        if not self.accelerator.is_main_process:
            self.accelerator.wait_for_everyone()
            return
        save_state(self.state_dir, step, weights=self.trainable,
                   optimizer=self.optimizer, scheduler=self.lr_scheduler, scaler=self.accelerator.scaler,
                   info={"epoch": epoch, "fingerprint": self.fingerprint, "started_at": self.started_at,
                         "losses": self.history[:step]}, keep=self.s.keep_states)
        self.accelerator.wait_for_everyone()

    def sample(self, folder: Path) -> list[Path]:
        """Images for the sample prompts × seeds, with the LoRA as it is now: one loop for every
        family; :meth:`sample_maker` makes the images."""
        from animlora.io.files import atomic_path
        from animlora.training.sampling import load_prompts

        prompts = load_prompts(self.s.sample_prompts or None, self.data.trigger)
        unet, _ = self._modules()
        self.comp.vae.to(self.device)
        make = self.sample_maker(unet)
        written = []
        unet.eval()
        try:
            for prompt in prompts.prompts:
                for seed in self.s.sample_seeds:
                    image = make(prompt, seed)
                    path = folder / f"{prompt.name}_{seed}.png"
                    with atomic_path(path) as tmp:
                        image.save(tmp, format="PNG")
                    written.append(path)
        finally:
            unet.train()
            if self.cache is not None:
                self.comp.vae.to("cpu")
        return written

    def sample_maker(self, unet: Any) -> Callable[[Any, int], Any]:
        """``(prompt, seed) -> PIL image`` for the training samples: SD 1.x / SDXL pipeline,
        Euler, the prompt's negative, CFG ``sample_cfg``."""
        import torch

        from animlora.training.sampling import SAMPLE_SAMPLER, build_pipeline, generate, make_scheduler

        s = self.s
        encoders = tuple(self.accelerator.unwrap_model(e) for e in self.encoders)
        pipe = build_pipeline(self.comp.family, self.comp.tokenizers, encoders, self.comp.vae, unet,
                              make_scheduler(SAMPLE_SAMPLER, self.comp.noise_scheduler.config))
        pipe.set_progress_bar_config(disable=True)

        def make(prompt: Any, seed: int) -> Any:
            with torch.autocast(self.device.type, dtype=self.weight_dtype, enabled=self.device.type == "cuda"):
                return generate(pipe, prompt, seed, steps=s.sample_steps, cfg=s.sample_cfg, width=s.resolution,
                                height=s.resolution)

        return make


def _color_jitter(rng: Any) -> Callable[[Any], Any]:
    """Brightness/contrast/saturation jitter of an RGB array in [-1, 1] (2D datasets only)."""
    import numpy as np

    b, c, sat = rng.uniform(-0.1, 0.1), rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)

    def apply(rgb: Any) -> Any:
        grey = rgb.mean(axis=0, keepdims=True)
        out = (grey + (rgb - grey) * sat) * c + b
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    return apply
