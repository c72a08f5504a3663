"""CPU of the template captioner per instance, this tree against the previous ``to_lab``
(one pixel per row) and ``_background_pixels`` (a 2-D boolean index), in one process, and
whether both give the same fields.

    PYTHONPATH=src python benchmarks/caption_cost.py PROJECT [--instances 40] [--repeats 3]

PROJECT is a finished project (it has run ``cluster``): its first ``--instances`` members
(cut-out + source frame, as the caption stage reads them) are captioned by
``TemplateCaptioner.caption_one`` with ``analysis.to_lab`` and ``analysis._background_pixels``
as they are in this tree and as they were before (``rgb.reshape(-1, 1, 3)``: OpenCV then
converts one 1-pixel row at a time; ``frame[keep]``),
alternating, ``--repeats`` rounds; the best round of each counts (CPU-s of this process,
all threads). Images are decoded once, before timing. Prints CPU-ms per instance, the ratio,
and whether every field (phrase, confidence, measured values) is identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def old_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``analysis.to_lab`` before this change (the baseline)."""
    import cv2

    flat = rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0
    lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB)
    return lab.reshape(*rgb.shape[:-1], 3)


def old_background_pixels(frame: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """``analysis._background_pixels`` before this change (the baseline): a 2-D boolean index."""
    return frame[:0].reshape(0, frame.shape[-1]) if keep is None else frame[keep]


def inputs(project: Path, n: int) -> list[Any]:
    from animlora.backends.captioning.base import CaptionInput
    from animlora.catalog import Catalog
    from animlora.curation.sources import project_members
    from animlora.io.images import read_image

    catalog = Catalog(project / "catalog.sqlite")
    members = [m for m in project_members(catalog, project) if m.frame_path][:n]
    return [CaptionInput(m.instance_id, read_image(m.image_path, "RGBA"), "x", m.character,
                         read_image(m.frame_path or "", "RGB"), m.bbox, None) for m in members]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", type=Path)
    ap.add_argument("--instances", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from animlora.backends.captioning import analysis
    from animlora.backends.captioning.template import TemplateCaptioner
    from animlora.config.loader import load_settings

    items = inputs(args.project, args.instances)
    captioner = TemplateCaptioner(load_settings(args.project).settings.caption)
    versions = {"before": (old_to_lab, old_background_pixels),
                "this tree": (analysis.to_lab, analysis._background_pixels)}
    best: dict[str, float] = {}
    fields: dict[str, list[Any]] = {}
    for _ in range(args.repeats):
        for name, (to_lab, background_pixels) in versions.items():
            analysis.to_lab, analysis._background_pixels = to_lab, background_pixels
            t = time.process_time()
            fields[name] = [captioner.caption_one(item).fields for item in items]
            spent = time.process_time() - t
            best[name] = min(best.get(name, spent), spent)
    analysis.to_lab, analysis._background_pixels = versions["this tree"]
    n = len(items)
    for name, spent in best.items():
        print(f"{name:>10}: {1000 * spent / n:7.1f} CPU-ms per instance ({n} instances, best of {args.repeats})")
    print(f"ratio: {best['before'] / best['this tree']:.2f}x less CPU")
    print(f"same fields: {fields['before'] == fields['this tree']}")


if __name__ == "__main__":
    main()
