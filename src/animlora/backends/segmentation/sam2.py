"""SAM 2.1 (transformers' Sam2VideoModel) for character masks with track ids: the GPU default.

SAM 2 segments *anything*; segmenting everything and keeping the largest masks (the
original pipeline's design) turns sky, walls and props into "characters". Here a matte
backend (``segment.sam2_prompter``: isnet, or the weightless classic) says *where* the
characters are, and SAM 2 says *exactly what* they are and follows them:

1. the prompter segments the shot; each of its tracks is one object (obj id = track);
2. each object is prompted with its box on the frame where it is largest;
3. the video model propagates every object forward from its prompt frame and backward to
   the shot's start, so an object keeps its id wherever it appears;
4. each (frame, object) mask with enough area becomes an instance; its score is SAM 2's
   object-presence probability.

Frames go through in windows of ``segment.batch_size`` frames (the prompts of each window
come from the same shot-wide prompter tracks, so ids hold across windows); a CUDA
out-of-memory error halves the window and retries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animlora.backends.segmentation.base import Frames, Instance, Segmenter, get_segmenter, run_in_batches
from animlora.backends.segmentation.instances import split_matte
from animlora.errors import MissingDependencyError, ModelNotFoundError


def _device(setting: str) -> str:
    import torch

    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


class Sam2Segmenter(Segmenter):
    name = "sam2"

    def __init__(self, settings: Any, models: Any, *, model: Any = None, processor: Any = None,
                 prompter: Segmenter | None = None) -> None:
        super().__init__(settings, models)
        import torch

        self.device = _device(settings.device)
        self.dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        if model is None or processor is None:
            from transformers import Sam2VideoModel, Sam2VideoProcessor

            from animlora.models import resolve

            path = resolve(settings.sam2_model, models)
            model = Sam2VideoModel.from_pretrained(path)
            processor = Sam2VideoProcessor.from_pretrained(path)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.processor = processor
        if prompter is None:
            try:
                prompter = get_segmenter(settings.sam2_prompter, settings, models)
            except (ModelNotFoundError, MissingDependencyError) as exc:
                from animlora.backends.registry import fallback_for

                other = fallback_for("segmentation", settings.sam2_prompter, settings.fallback)
                if other is None:
                    raise
                prompter = get_segmenter(other, settings, models)
                self.fallback_note = (f"prompter '{settings.sam2_prompter}' unavailable ({exc}); sam2 prompted by "
                                      f"'{other}' because segment.fallback is {settings.fallback}")
        self.prompter = prompter

    @property
    def recorded_as(self) -> str:
        asked = self.settings.sam2_prompter
        return self.name if self.prompter.name == asked else f"{self.name}+{self.prompter.name}"

    def segment(self, frames: Frames) -> list[Instance]:
        # 1. where the characters are: the prompter's tracks
        prompts = self.prompter.segment(frames)
        if not prompts:
            return []
        size = self.settings.batch_size
        found: list[Instance] = []
        for start in range(0, len(frames), size):
            window = list(range(start, min(start + size, len(frames))))
            found.extend(run_in_batches(lambda idx: self._propagate(frames, idx, prompts), window, len(window)))
        return found

    def _propagate(self, frames: Frames, indices: list[int], prompts: list[Instance]) -> list[Instance]:
        import torch

        s = self.settings
        local = {frame: k for k, frame in enumerate(indices)}
        # 2. one prompt per object the prompter found in this window: its largest instance
        def rank(inst: Instance) -> float:
            return float((inst.alpha >= s.alpha_threshold).sum())

        chosen: dict[int, Instance] = {}
        for inst in prompts:
            if inst.frame in local and (inst.track not in chosen or rank(inst) > rank(chosen[inst.track])):
                chosen[inst.track] = inst
        if not chosen:
            return []
        images = [frames[i] for i in indices]
        height, width = images[0].shape[:2]
        session = self.processor.init_video_session(video=images, inference_device=self.device, dtype=self.dtype)
        by_frame: dict[int, list[tuple[int, list[float]]]] = {}
        for track, inst in sorted(chosen.items()):
            x, y, w, h = inst.bbox
            frame = local[inst.frame]
            by_frame.setdefault(frame, []).append((track, [float(x), float(y), float(x + w), float(y + h)]))
        prompt_frame = {t: f for f, objs in by_frame.items() for t, _ in objs}
        results: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        with torch.inference_mode():
            # each frame's prompts are run on their frame before the next frame's are added:
            # propagation needs every object's conditioning output, and an object added with
            # its prompt on a later frame has none on the frames before it
            for frame, objs in sorted(by_frame.items()):
                self.processor.add_inputs_to_inference_session(
                    inference_session=session, frame_idx=frame, obj_ids=[t for t, _ in objs],
                    input_boxes=[[box for _, box in objs]],
                )
                self.model(inference_session=session, frame_idx=frame)
            # 3. forward from the first prompt, backward from the last
            passes = [(min(by_frame), False)]
            if max(by_frame) > 0:
                passes.append((max(by_frame), True))
            for start, reverse in passes:
                for out in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                    masks = self.processor.post_process_masks(
                        [out.pred_masks], original_sizes=[[height, width]], binarize=False
                    )[0]
                    probs = torch.sigmoid(masks.float()).cpu().numpy()[:, 0]
                    scores = (torch.sigmoid(out.object_score_logits.float()).cpu().numpy().ravel()
                              if out.object_score_logits is not None else np.ones(len(out.object_ids)))
                    for obj, prob, score in zip(out.object_ids, probs, scores, strict=False):
                        forward_side = out.frame_idx >= prompt_frame[obj]
                        if forward_side != reverse:
                            results[(out.frame_idx, obj)] = (prob, float(score))
        # 4. instances
        instances = []
        for (frame, obj), (prob, score) in sorted(results.items()):
            parts = split_matte(prob.astype(np.float32), indices[frame], s.alpha_threshold,
                                s.min_area_fraction, split_overlaps=False)
            if not parts:
                continue
            # one object = one instance: its largest part (SAM may leave stray specks)
            part = max(parts, key=lambda p: float((p.alpha >= s.alpha_threshold).sum()))
            instances.append(Instance(part.frame, part.bbox, part.alpha, score, track=obj))
        return instances

    def close(self) -> None:
        import torch

        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
