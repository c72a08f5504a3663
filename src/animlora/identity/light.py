"""Per-shot light normalisation for colour-based embedders.

A colour descriptor sees the light as much as the character: on Big Buck Bunny the warm-lit
Buck sat with the orange rodents and the shaded Buck with the grey chinchilla. One shot has
one light set-up, and the shot's set shows it better than any character does. So:

1. per shot, the colour of the light is estimated on the shot's background plates (the
   frames with the characters cut out; the whole frames when there are no plates), up to
   ``FRAMES_PER_SHOT`` of them, by *grey-edge* (``video.frame_measures.estimate_light``:
   Minkowski p = 6 norm of each linear-RGB channel's gradient): edges of a scene average to
   grey far more reliably than its surfaces do (a meadow is green, its edges are not);
2. the film's light is the per-channel median of the shots' (chromaticity only: exposure is
   the embedder's business);
3. every cut-out of a shot is multiplied, in linear RGB, by ``(film / shot) ** STRENGTH``
   (clipped to ``[1 / MAX_GAIN, MAX_GAIN]``) before it is embedded: a von Kries correction
   towards the film's average light — only when the cast is strong (a gain beyond
   ``exp(MIN_CAST)`` or below its inverse: night, sunset). A mild estimated cast is more
   often the set's own colours (a green meadow, a brown forest floor; grey-edge is not
   immune to them) than the light, and correcting it moved the cut-outs of Big Buck Bunny
   away from their own character (nearest track from another shot the same character:
   0.96 uncorrected, 0.85 all shots corrected, 0.95 with ``MIN_CAST`` 0.3).

Vectors made this way carry the key ``<embedder key>+shotlight<VERSION>``, so they never mix
with uncorrected ones in the cache.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from animlora.video.frame_measures import estimate_light

VERSION = "2"
FRAMES_PER_SHOT = 4
MIN_CAST = 0.3  # a shot whose largest gain is within exp(+-MIN_CAST) of 1 is left as it is
STRENGTH = 1.0
MAX_GAIN = 2.0


def shot_gains(plates: dict[str, Sequence[Path]], cache: Path | None = None) -> dict[str, list[float]]:
    """Per shot: the linear-RGB gains that bring its light to the film's (see module doc).
    ``cache``: a JSON file keeping each plate's estimate by its path (relative to the project
    the cache is in: a moved project keeps it), size and modification time, so a run over
    plates measured before reads none of them (the embed stage plans this on every run: 702
    plates of the whole film took 12 s)."""
    from animlora.io.files import atomic_write_json, portable
    from animlora.io.images import read_image

    known = _read_cache(cache)
    root = cache.parents[2] if cache is not None and len(cache.parents) > 2 else None  # <root>/.animlora/cache/
    fresh: dict[str, Any] = {}
    lights: dict[str, np.ndarray] = {}
    for shot, paths in plates.items():
        picks = list(paths)
        if len(picks) > FRAMES_PER_SHOT:
            picks = [picks[round(k * (len(picks) - 1) / (FRAMES_PER_SHOT - 1))] for k in range(FRAMES_PER_SHOT)]
        estimates = []
        for path in picks:
            try:
                stat = Path(path).stat()
            except OSError:  # a missing plate: just not measured
                continue
            stamp = [stat.st_size, stat.st_mtime_ns]
            key = portable(str(path), root)
            entry = known.get(key) or known.get(str(path))  # (earlier releases kept absolute paths)
            if entry is not None and entry[:2] == stamp:
                est = None if entry[2] is None else np.asarray(entry[2], np.float32)
            else:
                try:
                    image = read_image(path, "RGBA")
                except Exception:  # noqa: BLE001 - an unreadable plate: just not measured
                    continue
                est = estimate_light(image[..., :3], image[..., 3] >= 128)
            fresh[key] = [*stamp, None if est is None else [float(v) for v in est]]
            if est is not None:
                estimates.append(est)
        if estimates:
            lights[shot] = np.median(np.stack(estimates), 0)
    if cache is not None and fresh != known:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, fresh)
    if not lights:
        return {}
    film = np.median(np.stack(list(lights.values())), 0)
    gains = {}
    for shot, light in lights.items():
        gain = np.clip((film / light) ** STRENGTH, 1 / MAX_GAIN, MAX_GAIN)
        if float(np.abs(np.log(gain)).max()) <= MIN_CAST:  # a mild cast: more likely the set's colours
            gain = np.ones(3)
        gains[shot] = gain.round(4).tolist()
    return gains


def cache_file(state_dir: Path) -> Path:
    """Where a project keeps its plates' light estimates (see :func:`shot_gains`)."""
    return state_dir / "cache" / "shot_light.json"


def _read_cache(cache: Path | None) -> dict[str, Any]:
    import json

    if cache is None:
        return {}
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def apply_gain(rgba: np.ndarray, gain: Sequence[float] | None) -> np.ndarray:
    """The cut-out with its RGB multiplied by ``gain`` in linear light (alpha untouched)."""
    if gain is None:
        return rgba
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    lin = rgb**2.2 * np.asarray(gain, np.float32).reshape(1, 1, 3)
    out = rgba.copy()
    out[..., :3] = np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def project_plates(catalog: Any, root: Path) -> dict[str, list[Path]]:
    """Per shot: its frames' background plates (segmentation/background/...), else the frames."""
    from animlora.records.folders import stage_folder
    from animlora.records.segment import segment_frames

    plates: dict[str, list[Path]] = defaultdict(list)
    for frame in segment_frames(catalog, root):
        if frame.status != "ok" or frame.shot_id is None:
            continue
        plate = root / stage_folder("segment") / frame.background_path if frame.background_path else None
        if plate is not None and plate.is_file():
            plates[frame.shot_id].append(plate)
        elif frame.source and Path(frame.source).is_file():
            plates[frame.shot_id].append(Path(frame.source))
    return dict(plates)


class ShotLight:
    """An embedder whose cut-outs are corrected for their shot's light before embedding."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.key = f"{inner.key}+shotlight{VERSION}"

    def embed(self, images: Sequence[np.ndarray], gains: Sequence[Sequence[float] | None] | None = None) -> np.ndarray:
        if gains is not None:
            images = [apply_gain(image, gain) for image, gain in zip(images, gains, strict=True)]
        return self.inner.embed(images)
