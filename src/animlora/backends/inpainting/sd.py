"""Text-guided Stable Diffusion inpainting through diffusers: the occluder-removal option.

Weights: ``deocclude.sd_model`` (``sd15-inpainting`` by default: a 9-channel U-Net that sees
the masked image and the mask), resolved by animlora.models; a diffusers folder, or a single
``.safetensors``/``.ckpt`` file read with ``from_single_file``.

One call: the crop is resized so its long side is ``deocclude.resolution`` (both sides
multiples of 8, as the pipeline needs), the hole is resized with it (grown to every canvas
pixel it touches, so the generated area covers the whole hole after resizing back), the
pipeline runs with a generator seeded from ``project.seed`` (the same image, hole and prompt
always give the same pixels), and the result is resized back. Only the hole is replaced:
everything outside it is the input, bit for bit (the VAE round trip changes colours slightly
everywhere, which must not leak into the context image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.inpainting.base import Inpainter
from animlora.errors import BadInputError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
MULTIPLE = 8  # the SD pipelines reject sizes that are not multiples of 8


def canvas_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side ``long_side``, aspect kept, both multiples of 8."""
    scale = long_side / max(width, height)

    def snap(v: float) -> int:
        return max(MULTIPLE, int(round(v * scale / MULTIPLE)) * MULTIPLE)

    return snap(width), snap(height)


def load_pipeline(path: Path, dtype: Any) -> Any:
    """The StableDiffusionInpaintPipeline in ``path`` (folder or single file), safety checker off."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if dtype != torch.float32:  # float32 is the default
        kwargs["dtype"] = dtype
    try:
        if path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            pipe = StableDiffusionInpaintPipeline.from_single_file(str(path), **kwargs)
        else:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise BadInputError(path, f"cannot load an SD inpainting pipeline: {str(exc).splitlines()[0]}") from exc
    channels = pipe.unet.config.in_channels
    if channels != 9:
        # a plain text-to-image U-Net (4 channels) "inpaints" by ignoring the masked image
        raise BadInputError(path, f"not an inpainting model: its U-Net takes {channels} channels, not 9")
    pipe.set_progress_bar_config(disable=True)
    return pipe


class SDInpainter(Inpainter):
    """``settings`` is the ``deocclude`` section (sd_model, prompt, steps, guidance, resolution)."""

    name = "sd"
    text_guided = True

    def __init__(self, settings: Any, models: Any, *, seed: int = 0, device: str = "auto",
                 pipeline: Any = None) -> None:
        super().__init__(settings, models)
        import torch

        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if cuda else "cpu")
        # fp16 halves memory and time on a GPU; CPUs run fp16 convolutions slowly or not at all
        self.dtype = torch.float16 if cuda else torch.float32
        self.seed = seed
        if pipeline is None:
            from animlora.models import resolve

            pipeline = load_pipeline(resolve(settings.sd_model, models), self.dtype)
        self.pipe = pipeline.to(self.device)

    def prompt_for(self, description: str = "") -> str:
        """The settings' prompt with a character's description appended (when there is one)."""
        return ", ".join(p.strip() for p in (self.settings.prompt, description) if p and p.strip())

    def inpaint(self, image: np.ndarray, hole: np.ndarray, prompt: str | None = None) -> np.ndarray:
        """Fill ``hole`` (HxW bool) of ``image`` (HxWx3 uint8); outside the hole the input is returned unchanged."""
        import cv2
        import torch
        from PIL import Image

        if image.ndim != 3 or image.shape[2] != 3 or hole.shape != image.shape[:2]:
            raise BadInputError(Path("<image>"), f"image {image.shape} and hole {hole.shape} do not match")
        if not hole.any():
            return image.copy()
        height, width = image.shape[:2]
        cw, ch = canvas_size(width, height, self.settings.resolution)
        shrink = cw * ch < width * height
        canvas = cv2.resize(image, (cw, ch), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        # any canvas pixel the hole touches is part of the canvas hole (INTER_AREA averages)
        canvas_hole = cv2.resize(hole.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA) > 0
        # a fresh generator per call: the result does not depend on what was filled before
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with torch.inference_mode():
            result = self.pipe(
                prompt=prompt if prompt is not None else self.prompt_for(),
                negative_prompt=self.settings.negative_prompt or None,
                image=Image.fromarray(canvas),
                mask_image=Image.fromarray(canvas_hole.astype(np.uint8) * 255, "L"),
                height=ch,
                width=cw,
                strength=1.0,
                num_inference_steps=self.settings.steps,
                guidance_scale=self.settings.guidance,
                generator=generator,
                output_type="np",
            ).images[0]
        filled = (np.clip(result, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        back = cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC if shrink else cv2.INTER_AREA)
        return np.where(hole[..., None], back, image)
