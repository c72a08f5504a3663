"""Pictures of a clustering: thumbnails, one contact sheet per cluster, and the 2-D map
(``cluster_visualization.png``) with each cluster's medoid drawn at its place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from animlora.io.images import read_image, write_image

BACKGROUND = (200, 200, 200)


def thumbnail(path: Path, size: int) -> np.ndarray:
    """RGB uint8 square: the cut-out fitted in ``size`` and composited on light grey."""
    import cv2

    from animlora.backends.embedding.base import composite

    rgba = read_image(path, "RGBA")
    h, w = rgba.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(rgba, (nw, nh), interpolation=cv2.INTER_AREA)
    tile = np.empty((size, size, 3), np.uint8)
    tile[:] = BACKGROUND
    y, x = (size - nh) // 2, (size - nw) // 2
    tile[y : y + nh, x : x + nw] = composite(small, BACKGROUND)
    return tile


def contact_sheet(paths: Sequence[Path], out: Path, size: int, columns: int = 8) -> Path:
    """A grid of thumbnails, written as JPEG."""
    columns = max(1, min(columns, len(paths)))
    rows = max(1, -(-len(paths) // columns))
    sheet = np.full((rows * (size + 2) + 2, columns * (size + 2) + 2, 3), 255, np.uint8)
    for n, path in enumerate(paths):
        r, c = divmod(n, columns)
        try:
            tile = thumbnail(path, size)
        except Exception:  # noqa: BLE001 - an unreadable file is a blank tile, not a failed sheet
            tile = np.zeros((size, size, 3), np.uint8)
        sheet[2 + r * (size + 2) : 2 + r * (size + 2) + size, 2 + c * (size + 2) : 2 + c * (size + 2) + size] = tile
    return write_image(out, sheet, jpeg_quality=90)


def visualization(
    points: np.ndarray,
    labels: np.ndarray,
    names: dict[int, str],
    medoids: dict[int, Path],
    out: Path,
    thumb: int = 64,
    max_points: int = 20000,
    seed: int = 0,
) -> Path:
    """2-D scatter (first two principal axes of the embeddings) coloured by cluster, noise
    grey, each cluster's medoid thumbnail at its centroid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from animlora.identity.clustering import pca

    xy = pca(points.astype(np.float32), 2, seed) if points.shape[1] > 2 else points
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    idx = np.arange(len(xy))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(xy), max_points, replace=False))
    fig, ax = plt.subplots(figsize=(11, 9), dpi=100)
    noise = idx[labels[idx] < 0]
    ax.scatter(xy[noise, 0], xy[noise, 1], s=4, c="#b0b0b0", label=f"noise ({int((labels < 0).sum())})")
    cmap = plt.get_cmap("tab20")
    for lab in sorted(names):
        sel = idx[labels[idx] == lab]
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(lab % 20),
                   label=f"{names[lab]} ({int((labels == lab).sum())})")
        centre = xy[labels == lab].mean(0)
        if lab in medoids:
            try:
                image = OffsetImage(thumbnail(medoids[lab], thumb), zoom=1.0)
                ax.add_artist(AnnotationBbox(image, centre, frameon=True, pad=0.2,
                                             bboxprops={"edgecolor": cmap(lab % 20), "linewidth": 2}))
            except Exception:  # noqa: BLE001 - a missing thumbnail leaves the dot
                pass
        ax.annotate(names[lab], centre, xytext=(0, -thumb * 0.65), textcoords="offset points",
                    ha="center", fontsize=8, weight="bold")
    ax.set_title(f"{len(names)} clusters, {len(labels)} instances (PCA of the embeddings)")
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 30:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    from animlora.io.files import atomic_path

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
