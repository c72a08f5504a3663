"""Speed and GPU memory of the `sam2` segmentation backend at SAM 2.1's real sizes (random weights).

The tests run the backend on a tiny randomly initialised Sam2VideoModel on the CPU. This builds
the video model at the published Hiera-T and Hiera-L shapes (1024 px input, the processor's
defaults), forces the object-presence head to say "present" (random weights would call every
object absent and skip the mask path), and runs ``Sam2Segmenter.segment`` with the weightless
``classic`` prompter on consecutive frames of the bundled sample clip, as the segment stage
does for one shot: windows of ``segment.batch_size`` frames, bf16 on CUDA.

Random weights change no shape, so the time per frame and the memory are those of the real
checkpoints; the masks are meaningless (only their count is printed). Needs CUDA for the figures
that matter; ``--device cpu --sizes tiny --frames 4`` runs anywhere.

    python benchmarks/sam2_gpu.py                          # tiny and large, 48 frames, CUDA
    python benchmarks/sam2_gpu.py --sizes large --frames 96 --batch-size 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

# SAM 2.1 Hiera backbones (the facebook/sam2.1-hiera-* configs): hidden size, heads,
# blocks per stage, window sizes, global-attention blocks
HIERA = {
    "tiny": dict(hidden_size=96, num_attention_heads=1, blocks_per_stage=[1, 2, 7, 2],
                 window_size_per_stage=[8, 4, 14, 7], global_attention_blocks=[5, 7, 9],
                 window_positional_embedding_background_size=[7, 7]),
    "small": dict(hidden_size=96, num_attention_heads=1, blocks_per_stage=[1, 2, 11, 2],
                  window_size_per_stage=[8, 4, 14, 7], global_attention_blocks=[7, 10, 13],
                  window_positional_embedding_background_size=[7, 7]),
    "base-plus": dict(hidden_size=112, num_attention_heads=2, blocks_per_stage=[2, 3, 16, 3],
                      window_size_per_stage=[8, 4, 14, 7], global_attention_blocks=[12, 16, 20],
                      window_positional_embedding_background_size=[14, 14]),
    "large": dict(hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
                  window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
                  window_positional_embedding_background_size=[7, 7]),
}


def build(size: str):
    import torch
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VisionConfig,
    )
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    h = HIERA[size]
    dims = [h["hidden_size"] * 2**i for i in range(4)]
    heads = [h["num_attention_heads"] * 2**i for i in range(4)]
    backbone = Sam2HieraDetConfig(embed_dim_per_stage=dims, num_attention_heads_per_stage=heads, **h)
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=dims[::-1])
    torch.manual_seed(0)
    model = Sam2VideoModel(Sam2VideoConfig(vision_config=vision)).eval()
    last = model.mask_decoder.pred_obj_score_head.proj_out
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 8.0)
    params = sum(p.numel() for p in model.parameters())
    processor = Sam2VideoProcessor(Sam2ImageProcessor(), Sam2VideoVideoProcessor())
    return model, processor, params


def clip_frames(count: int):
    import cv2

    cap = cv2.VideoCapture(str(ROOT / "src/animlora/data/bigbuckbunny.mp4"))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "large"], choices=list(HIERA))
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=None, help="segment.batch_size (default: the config's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    import torch

    from animlora.backends.segmentation.base import Frames, get_segmenter
    from animlora.backends.segmentation.sam2 import Sam2Segmenter
    from animlora.config import load_settings

    over = {"device": args.device} | ({"batch_size": args.batch_size} if args.batch_size else {})
    settings = load_settings(overrides={"segment": over}).settings
    frames = clip_frames(args.frames)
    h, w = frames[0].shape[:2]
    cuda = torch.cuda.is_available() and args.device != "cpu"
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if cuda else 'cpu'}; "
          f"{len(frames)} frames {w}x{h}, batch_size {settings.segment.batch_size}")
    prompter = get_segmenter("classic", settings.segment, settings.models)
    t = time.perf_counter()
    prompts = prompter.segment(Frames.of_arrays(frames))
    prompt_s = time.perf_counter() - t
    print(f"classic prompter: {len(prompts)} instances, {len({p.track for p in prompts})} tracks, {prompt_s:.2f} s")
    for size in args.sizes:
        model, processor, params = build(size)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        seg = Sam2Segmenter(settings.segment, settings.models, model=model, processor=processor, prompter=prompter)
        resident = torch.cuda.memory_allocated() / 2**20 if cuda else 0.0
        times = []
        for _ in range(2):  # the first run pays for kernels' start-up
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            found = seg.segment(Frames.of_arrays(frames))
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
        reserved = torch.cuda.max_memory_reserved() / 2**20 if cuda else 0.0
        sam_s = times[-1] - prompt_s
        print(f"{size:>9}: {params / 1e6:.1f} M params; {len(found)} instances; "
              f"{times[-1]:.2f} s per run (first {times[0]:.2f} s), {len(frames) / times[-1]:.1f} frames/s "
              f"({len(frames) / max(sam_s, 1e-9):.1f} without the prompter); "
              f"resident {resident:.0f} MiB, peak allocated {peak:.0f} MiB, peak reserved {reserved:.0f} MiB")
        seg.close()
        del seg, model


if __name__ == "__main__":
    main()
