"""Checkpoint evaluation, as numbered steps::

    1. check inputs     checkpoints (kohya files, epoch from ss_epoch), prompt file, base model family
    2. load models      the base pipeline (sampler, steps, CFG from settings) and the CLIP scorer
    3. reference        CLIP image embeddings of the character's dataset (identity centroid)
    4. generate         the base model (LoRA strength 0) → base_model/, then per checkpoint × LoRA
                        strength: prompts × seeds → checkpoint_<epoch>/
    5. metrics          CLIP text-image score, identity similarity, diversity across seeds; each
                        with its spread (std, standard error) over prompts × seeds
    6. pick and report  best checkpoint and a verdict (tie or win, deciding metric, against the
                        base model), quality_evaluation.json, comparison_grid.png,
                        metrics_per_epoch.png, report.html

Metrics (all from one CLIP model, cosine similarities of L2-normalised embeddings):

- ``clip_score``  100 × max(cos(image, prompt), 0), averaged over images (as torchmetrics' CLIPScore)
- ``identity``    cos(image, centroid of the dataset's image embeddings), averaged
- ``diversity``   1 − mean pairwise cos between the images of one prompt across seeds, averaged
                  over prompts (0 = every seed gives the same picture: overfitting)

Best-checkpoint score = Σ weight × metric with ``clip_score`` divided by 100, weights from
``evaluate.weights`` (default identity 0.5, clip_score 0.3, diversity 0.2): raw values, not
ranks, so the pick does not depend on which other checkpoints are in the comparison.

Noise: every row renders the same prompts × seeds (the same starting noise), so two rows are
compared image by image. Each image gets the score of its own identity and CLIP score and its
prompt's diversity (their mean is the row's score); a margin within ``NOISE_Z`` (2) standard
errors of the paired differences is a tie. The metric with the largest weighted share of the
margin is named as the one that decided.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.config.schema import EvaluateSettings, ModelsSettings
from animlora.errors import BadInputError, ConfigError, require_packages
from animlora.io.files import atomic_path, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class Checkpoint:
    label: str  # grid row / folder: checkpoint_<epoch> or the file stem
    path: Path
    epoch: int | None
    meta: dict[str, str]


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any reader error: not a LoRA file
        raise BadInputError(path, f"not a readable .safetensors LoRA ({exc})") from exc


#: what evaluation imports (all in ``pip install 'animlora[train]'``)
EVALUATE_PACKAGES = ("torch", "diffusers", "transformers", "peft", "safetensors")


def require_evaluate_packages() -> None:
    require_packages(EVALUATE_PACKAGES, "train", "LoRA evaluation")


def run_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The kohya files of a run, by epoch; the final file is dropped when an epoch file holds the
    same epoch (they are the same weights)."""
    require_evaluate_packages()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(run_dir, "the run folder does not exist")
    found: dict[Any, Checkpoint] = {}
    files = sorted(run_dir.glob("*.safetensors"), key=lambda p: (re.search(r"-\d{6}$", p.stem) is None, p.name))
    for path in files:  # epoch files first: a final file of the same epoch is a copy
        meta = read_metadata(path)
        epoch = int(meta["ss_epoch"]) if meta.get("ss_epoch", "").isdigit() else None
        if epoch is None and (m := re.search(r"-(\d{6})$", path.stem)):
            epoch = int(m[1])
        key = epoch if epoch is not None else path.stem
        if key not in found:
            found[key] = Checkpoint(f"checkpoint_{epoch}" if epoch is not None else path.stem, path, epoch, meta)
    if not found:
        raise BadInputError(run_dir, "no .safetensors checkpoints in the run folder")
    return sorted(found.values(), key=lambda c: (c.epoch is None, c.epoch or 0, c.label))


def file_checkpoints(paths: list[Path]) -> list[Checkpoint]:
    require_evaluate_packages()
    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise BadInputError(path, "no such LoRA file")
        meta = read_metadata(path)
        epoch = int(meta["ss_epoch"]) if meta.get("ss_epoch", "").isdigit() else None
        out.append(Checkpoint(path.stem, path, epoch, meta))
    labels = [c.label for c in out]
    if len(set(labels)) != len(labels):
        out = [Checkpoint(f"{i}_{c.label}", c.path, c.epoch, c.meta) for i, c in enumerate(out)]
    return out


# -- CLIP scorer -------------------------------------------------------------------------
class ClipScorer:
    """Normalised CLIP image and text embeddings (transformers ``CLIPModel``)."""

    def __init__(self, folder: Path, device: Any) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(str(folder)).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(str(folder))
        self.device = device

    @staticmethod
    def _tensor(out: Any) -> Any:
        # transformers 5 returns a model output whose pooler_output is the projected embedding
        return out if hasattr(out, "norm") else out.pooler_output

    def images(self, images: list[Any]) -> Any:
        import torch

        with torch.no_grad():
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            emb = self._tensor(self.model.get_image_features(**inputs)).float()
        return torch.nn.functional.normalize(emb, dim=-1).cpu()

    def texts(self, texts: list[str]) -> Any:
        import torch

        with torch.no_grad():
            inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
            emb = self._tensor(self.model.get_text_features(**inputs)).float()
        return torch.nn.functional.normalize(emb, dim=-1).cpu()


def clip_folder(name: str, models: ModelsSettings) -> Path:
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from animlora.models import resolve

    return resolve(name, models)


def diversity(embeddings: Any) -> float:
    """1 − mean pairwise cosine similarity (NaN for a single image)."""
    n = embeddings.shape[0]
    if n < 2:
        return float("nan")
    sims = embeddings @ embeddings.T
    off = (sims.sum() - sims.diag().sum()) / (n * (n - 1))
    return float(1.0 - off)


BASE_LABEL = "base_model"
NOISE_Z = 2.0  # a margin below 2 standard errors of the paired differences is a tie (≈95%)


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation and standard error of the mean of the finite values."""
    vals = [v for v in values if not math.isnan(v)]
    n = len(vals)
    mean = sum(vals) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "sem": std / math.sqrt(n) if n > 1 else float("nan"), "n": n}


def _unit_scores(samples: dict[str, list[float]], weights: dict[str, float], per_prompt: int) -> list[float]:
    """The score of each image (prompt × seed): its identity and CLIP score, its prompt's diversity.
    Their mean is the row's score; two rows' images pair up by (prompt, seed)."""
    n = len(samples["clip_score"])
    out = []
    for i in range(n):
        metrics = {"clip_score": samples["clip_score"][i],
                   "identity": samples["identity"][i] if samples["identity"] else float("nan"),
                   "diversity": samples["diversity"][i // per_prompt]}
        out.append(best_score(metrics, weights))
    return out


def _row(label: str, checkpoint: str | None, epoch: int | None, strength: float, steps: int | None, folder: str,
         samples: dict[str, list[float]], weights: dict[str, float], per_prompt: int) -> dict[str, Any]:
    spread = {name: _spread(values) for name, values in samples.items()}
    metrics = {name: spread[name]["mean"] for name in ("clip_score", "identity", "diversity")}
    units = _unit_scores(samples, weights, per_prompt)
    return {"label": label, "checkpoint": checkpoint, "epoch": epoch, "strength": strength, "steps": steps,
            "folder": folder, "metrics": metrics, "spread": spread, "score": best_score(metrics, weights),
            "image_scores": units}


def compare_rows(a: dict[str, Any], b: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """Row ``a`` against ``b``: score margin, its noise (paired by image), whether it is a tie,
    and each metric's weighted share of the margin (the largest one decided)."""
    diffs = [x - y for x, y in zip(a["image_scores"], b["image_scores"], strict=True)]
    spread = _spread(diffs)
    margin = a["score"] - b["score"]
    noise = NOISE_Z * spread["sem"] if not math.isnan(spread["sem"]) else float("inf")
    scale = {"clip_score": 0.01}
    shares = {}
    for name, weight in weights.items():
        va, vb = a["metrics"].get(name, float("nan")), b["metrics"].get(name, float("nan"))
        if not (math.isnan(va) or math.isnan(vb)):
            shares[name] = weight * scale.get(name, 1.0) * (va - vb)
    decided_by = max(shares, key=lambda k: shares[k]) if shares and margin > 0 else None
    return {"against": b["label"], "margin": margin, "noise": noise, "tie": abs(margin) <= noise,
            "decided_by": decided_by, "metric_shares": shares}


def judge(best: dict[str, Any], rows: list[dict[str, Any]], baseline: dict[str, Any],
          weights: dict[str, float]) -> dict[str, Any]:
    """The pick, said honestly: tied checkpoints, the deciding metric, and whether the LoRA
    measurably beats the base model at all."""
    others = sorted((r for r in rows if r is not best), key=lambda r: -r["score"])
    versus = [compare_rows(best, r, weights) for r in others]
    tied = [v["against"] for v in versus if v["tie"]]
    runner = versus[0] if versus else None
    vs_base = compare_rows(best, baseline, weights)
    parts = []
    if runner is None:
        parts.append(f"{best['label']} is the only checkpoint")
    elif tied:
        parts.append(f"tie: {best['label']} leads {', '.join(tied)} by less than the noise "
                     f"(margin {runner['margin']:.2g} ≤ {runner['noise']:.2g})")
    else:
        parts.append(f"{best['label']} beats {runner['against']} by {runner['margin']:.2g} "
                     f"(noise {runner['noise']:.2g}), decided by {runner['decided_by']}")
    if vs_base["tie"] or vs_base["margin"] <= 0:
        parts.append(f"it does not measurably beat the base model (margin {vs_base['margin']:.2g}, "
                     f"noise {vs_base['noise']:.2g})")
    else:
        parts.append(f"it beats the base model by {vs_base['margin']:.2g} (noise {vs_base['noise']:.2g}), "
                     f"mostly by {vs_base['decided_by']}")
    return {"tie": bool(tied), "tied_with": tied, "decided_by": runner["decided_by"] if runner and not tied else None,
            "runner_up": runner, "versus_base": vs_base, "beats_base": not vs_base["tie"] and vs_base["margin"] > 0,
            "verdict": "; ".join(parts)}


def best_score(metrics: dict[str, float], weights: dict[str, float]) -> float:
    scaled = {"clip_score": metrics.get("clip_score", 0.0) / 100.0, "identity": metrics.get("identity", 0.0),
              "diversity": metrics.get("diversity", 0.0)}
    total = 0.0
    for name, weight in weights.items():
        value = scaled.get(name, float("nan"))
        total += weight * (0.0 if math.isnan(value) else value)
    return total


# -- the procedure ------------------------------------------------------------------------
def evaluate_run(run_dir: Path, out_dir: Path, settings: EvaluateSettings, models: ModelsSettings, *,
                 base_model: str, base_model_config: str = "", dataset: Path | None = None,
                 prompts: str | None = None, progress: Any = None) -> dict[str, Any]:
    """Evaluate every checkpoint of a training run (``animlora evaluate``)."""
    checkpoints = run_checkpoints(run_dir)
    if dataset is None:
        results = Path(run_dir) / "training_results.json"
        if results.is_file():
            plan_dataset = json.loads(results.read_text(encoding="utf-8")).get("plan", {}).get("dataset")
            dataset = Path(plan_dataset) if plan_dataset and Path(plan_dataset).is_dir() else None
    return evaluate_checkpoints(checkpoints, out_dir, settings, models, base_model=base_model,
                                base_model_config=base_model_config, dataset=dataset, prompts=prompts,
                                progress=progress)


def evaluate_checkpoints(checkpoints: list[Checkpoint], out_dir: Path, settings: EvaluateSettings,
                         models: ModelsSettings, *, base_model: str, base_model_config: str = "",
                         dataset: Path | None = None, prompts: str | None = None,
                         progress: Any = None) -> dict[str, Any]:
    """Images, metrics and the pick for ``checkpoints``; ``base_model_config`` (``train.base_model_config``)
    completes a single-file base model with its diffusers configs (for Flux: text encoders and VAE too)."""
    require_evaluate_packages()
    import torch

    from animlora.training.base_model import check_family, load_components, locate_base_model
    from animlora.training.sampling import build_pipeline, generate, load_prompts, make_scheduler
    from animlora.training.trainer import quiet_library_noise

    quiet_library_noise()

    # 1. check inputs
    out_dir = Path(out_dir)
    trigger = next((c.meta.get("ss_trigger_word") or c.meta.get("modelspec.trigger_phrase") for c in checkpoints
                    if c.meta.get("ss_trigger_word") or c.meta.get("modelspec.trigger_phrase")), "")
    prompt_set = load_prompts(prompts or settings.prompts or None, trigger)
    seeds = list(settings.seeds or prompt_set.seeds)
    if not seeds:
        raise ConfigError("evaluate.seeds is empty and the prompt file has no seeds")
    ref = locate_base_model(base_model, models)
    for c in checkpoints:
        version = c.meta.get("ss_base_model_version", "")
        if version:
            check_family(ref, "sdxl" if version.startswith("sdxl") else "flux" if version.startswith("flux") else "sd15")
    if ref.family == "flux":
        from animlora.training.flux_model import pipeline_source

        pipeline_source(ref, base_model_config)  # a single file without its configs: one error, before any image
    reference_images = _reference_images(dataset, settings.reference_images)

    # 2. load models
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    scheduler_name = settings.scheduler
    if ref.family == "flux":  # bf16 (fp16 overflows), its own flow-matching sampler, offload on a 24 GB GPU
        from animlora.training.flux_model import flux_pipeline, load_flux

        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        comp = load_flux(ref, config=base_model_config, dtype=dtype if device.type == "cuda" else None)
        pipe = flux_pipeline(comp, comp.unet)
        scheduler_name = "flow_match_euler"
        pipe.enable_model_cpu_offload() if device.type == "cuda" else pipe.to(device)
        native = 128 * (2 ** (len(comp.vae.config.block_out_channels) - 1))
    else:
        comp = load_components(ref, config=base_model_config)
        pipe = build_pipeline(comp.family, comp.tokenizers, comp.text_encoders, comp.vae, comp.unet,
                              make_scheduler(settings.scheduler, comp.noise_scheduler.config))
        pipe.to(device, dtype) if device.type == "cuda" else pipe.to(device)
        native = int(comp.unet.config.sample_size) * (2 ** (len(comp.vae.config.block_out_channels) - 1))
    pipe.set_progress_bar_config(disable=True)
    width, height = settings.width or native, settings.height or native
    scorer = ClipScorer(clip_folder(settings.clip_model, models), device)

    # 3. reference identity
    centroid = None
    if reference_images:
        ref_emb = scorer.images(reference_images)
        centroid = torch.nn.functional.normalize(ref_emb.mean(0, keepdim=True), dim=-1)
    text_emb = scorer.texts([p.prompt for p in prompt_set.prompts])

    # 4–5. generate and measure: the base model (LoRA strength 0) first, then every checkpoint × strength
    total = (1 + len(checkpoints) * len(settings.strengths)) * len(prompt_set.prompts) * len(seeds)
    counter = {"done": 0}

    def measure(folder: Path, suffix: str) -> tuple[list[Any], dict[str, Any]]:
        cells, clip_scores, identities, per_prompt_div = [], [], [], []
        for pi, prompt in enumerate(prompt_set.prompts):
            prompt_images = []
            for seed in seeds:
                image = generate(pipe, prompt, seed, steps=settings.steps, cfg=settings.cfg, width=width,
                                 height=height)
                with atomic_path(folder / f"{prompt.name}_s{seed}{suffix}.png") as tmp:
                    image.save(tmp, format="PNG")
                prompt_images.append(image)
                counter["done"] += 1
                if progress is not None:
                    progress(counter["done"], total)
            emb = scorer.images(prompt_images)
            clip_scores += (100.0 * torch.clamp(emb @ text_emb[pi], min=0)).tolist()
            if centroid is not None:
                identities += (emb @ centroid[0]).tolist()
            per_prompt_div.append(diversity(emb))
            cells += prompt_images
        return cells, {"clip_score": clip_scores, "identity": identities, "diversity": per_prompt_div}

    rows: list[dict[str, Any]] = []
    grid_rows: list[tuple[str, list[Any]]] = []
    cells, samples = measure(out_dir / BASE_LABEL, "")
    baseline = _row(BASE_LABEL, None, None, 0.0, None, BASE_LABEL, samples, settings.weights, len(seeds))
    grid_rows.append((f"{BASE_LABEL} (LoRA 0)", cells))
    for ci, ckpt in enumerate(checkpoints):
        adapter = f"ckpt{ci}"
        pipe.load_lora_weights(lora_source(ckpt.path, comp.family), adapter_name=adapter)
        for strength in settings.strengths:
            pipe.set_adapters([adapter], adapter_weights=[strength])
            label = ckpt.label if len(settings.strengths) == 1 else f"{ckpt.label}@{strength:g}"
            suffix = "" if len(settings.strengths) == 1 else f"_w{strength:g}"
            cells, samples = measure(out_dir / ckpt.label, suffix)
            steps = int(ckpt.meta["ss_steps"]) if ckpt.meta.get("ss_steps", "").isdigit() else None
            rows.append(_row(label, str(ckpt.path), ckpt.epoch, strength, steps, ckpt.label, samples,
                             settings.weights, len(seeds)))
            grid_rows.append((label, cells))
        pipe.delete_adapters(adapter)

    # 6. pick and report
    best = max(rows, key=lambda r: r["score"])
    verdict = judge(best, rows, baseline, settings.weights)
    columns = [f"{p.name} s{s}" for p in prompt_set.prompts for s in seeds]
    grid = write_grid(out_dir / "comparison_grid.png", grid_rows, columns)
    plot = write_metric_plot(out_dir / "metrics_per_epoch.png", rows, baseline)
    report = {
        "base_model": base_model,
        "family": ref.family,
        "prompts": prompt_set.source,
        "trigger": trigger,
        "seeds": seeds,
        "scheduler": scheduler_name,
        "steps": settings.steps,
        "cfg": settings.cfg,
        "size": [width, height],
        "strengths": list(settings.strengths),
        "reference_images": len(reference_images),
        "score": {"formula": "sum(weight * metric), clip_score / 100", "weights": dict(settings.weights),
                  "noise": f"{NOISE_Z:g} x the standard error of the paired per-image score difference"},
        "baseline": baseline,
        "checkpoints": rows,
        "best": {"label": best["label"], "checkpoint": best["checkpoint"], "epoch": best["epoch"],
                 "strength": best["strength"], "score": best["score"], **verdict},
        "files": {"grid": grid.name, "plot": plot.name if plot else None, "html": "report.html"},
    }
    atomic_write_json(out_dir / "quality_evaluation.json", _finite(report))
    write_html(out_dir / "report.html", report, prompt_set, seeds)
    return report


def lora_source(path: Path, family: str) -> Any:
    """What ``load_lora_weights`` gets: the file, or for a kohya Flux file its diffusers form
    (diffusers' own kohya-Flux converter only knows the full-size layout)."""
    if family != "flux":
        return str(path)
    from safetensors.torch import load_file

    from animlora.training.flux import is_flux_lora, kohya_to_diffusers

    state = load_file(str(path))
    return kohya_to_diffusers(state) if is_flux_lora(state) else str(path)


def _finite(value: Any) -> Any:
    """NaN and infinities → None, so the JSON is valid (they are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _reference_images(dataset: Path | None, limit: int) -> list[Any]:
    """Up to ``limit`` dataset images, evenly spaced, RGBA composited on white."""
    from PIL import Image

    if dataset is None:
        return []
    folder = Path(dataset) / "images" if (Path(dataset) / "images").is_dir() else Path(dataset)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        return []
    step = max(1, len(files) // limit)
    out = []
    for path in files[::step][:limit]:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out.append(Image.alpha_composite(white, rgba).convert("RGB"))
    return out


def write_grid(path: Path, rows: list[tuple[str, list[Any]]], columns: list[str], cell: int = 256) -> Path:
    """Rows = checkpoints, columns = prompts × seeds, with labels."""
    from PIL import Image, ImageDraw, ImageFont

    label_w, header_h = 180, 28
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    n_cols = max(len(cells) for _, cells in rows)
    canvas = Image.new("RGB", (label_w + n_cols * cell, header_h + len(rows) * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns[:n_cols]):
        draw.text((label_w + j * cell + 4, 6), name, fill="black", font=font)
    for i, (label, cells) in enumerate(rows):
        y = header_h + i * cell
        draw.text((6, y + cell // 2 - 8), label, fill="black", font=font)
        for j, image in enumerate(cells):
            canvas.paste(image.convert("RGB").resize((cell, cell)), (label_w + j * cell, y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def write_metric_plot(path: Path, rows: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> Path | None:
    """The metrics against epoch (or checkpoint order), one line per metric and strength, with
    ±1 standard error bars and the base model as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    strengths = sorted({r["strength"] for r in rows})
    for ax, name in zip(axes, ("clip_score", "identity", "diversity", "score"), strict=True):
        for strength in strengths:
            sel = [r for r in rows if r["strength"] == strength]
            xs = [r["epoch"] if r["epoch"] is not None else i for i, r in enumerate(sel)]
            ys = [r["score"] if name == "score" else r["metrics"][name] for r in sel]
            errs = [0.0 if name == "score" else (r["spread"][name]["sem"] if "spread" in r else 0.0) for r in sel]
            errs = [0.0 if e is None or math.isnan(e) else e for e in errs]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=f"strength {strength:g}")
        if baseline is not None:
            value = baseline["score"] if name == "score" else baseline["metrics"][name]
            if not math.isnan(value):
                ax.axhline(value, color="grey", linestyle="--", label="base model")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if len(strengths) > 1 or baseline is not None:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def write_html(path: Path, report: dict[str, Any], prompt_set: Any, seeds: list[int]) -> Path:
    import html

    def fmt(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    def cell(r: dict[str, Any], name: str) -> str:
        sem = (r.get("spread") or {}).get(name, {}).get("sem")
        plus = "" if sem is None or (isinstance(sem, float) and math.isnan(sem)) else f" ± {sem:.3f}"
        return f"<td>{fmt(r['metrics'][name])}{plus}</td>"

    rows = []
    for r in [report["baseline"], *report["checkpoints"]] if report.get("baseline") else report["checkpoints"]:
        mark = " ★" if r["label"] == report["best"]["label"] else ""
        rows.append(f"<tr><td>{html.escape(r['label'])}{mark}</td><td>{r['epoch'] if r['epoch'] is not None else '–'}</td>"
                    f"<td>{r['strength']:g}</td>{cell(r, 'clip_score')}{cell(r, 'identity')}{cell(r, 'diversity')}"
                    f"<td><b>{fmt(r['score'])}</b></td></tr>")
    prompts = "".join(f"<li><code>{html.escape(p.name)}</code>: {html.escape(p.prompt)}</li>" for p in prompt_set.prompts)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>LoRA evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
img{{max-width:100%}}</style></head><body>
<h1>LoRA evaluation</h1>
<p>Best: <b>{html.escape(report['best']['label'])}</b> ({html.escape(report['best']['checkpoint'])}),
score {fmt(report['best']['score'])}. Score = {html.escape(report['score']['formula'])},
weights {html.escape(json.dumps(report['score']['weights']))}.</p>
<p><b>Verdict:</b> {html.escape(report['best'].get('verdict', ''))}. Values are means ± standard error over
prompts × seeds; a margin within {html.escape(report['score'].get('noise', ''))} is a tie.</p>
<p>Base model {html.escape(str(report['base_model']))}; {report['scheduler']}, {report['steps']} steps, CFG {report['cfg']},
seeds {seeds}, {report['reference_images']} reference images.</p>
<table><tr><th>checkpoint</th><th>epoch</th><th>strength</th><th>CLIP score</th><th>identity</th><th>diversity</th><th>score</th></tr>
{''.join(rows)}</table>
<h2>Prompts</h2><ul>{prompts}</ul>
<h2>Grid</h2><img src="{report['files']['grid']}" alt="comparison grid">
{f'<h2>Metrics per epoch</h2><img src="{report["files"]["plot"]}" alt="metrics">' if report['files']['plot'] else ''}
</body></html>
"""
    return atomic_write_text(path, page)
