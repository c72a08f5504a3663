"""The trainer's inputs: a training dataset folder (``images/`` + ``captions/``, same stem,
``.txt``, + ``metadata.json``), read and checked, and its aspect-ratio buckets.

Everything here is checked before a model is loaded: a missing caption or an unreadable image
is one error naming the files. Buckets and caption handling follow kohya sd-scripts, so a
dataset trains the same way with either engine.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animlora.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_NAMED = 10  # files named in one error message


@dataclass(frozen=True)
class DatasetItem:
    """One training image: its file, caption text, size and whether it has an alpha channel."""

    image: Path
    caption: str
    width: int
    height: int
    has_alpha: bool


@dataclass(frozen=True)
class TrainingDataset:
    root: Path
    items: tuple[DatasetItem, ...]
    trigger: str
    name: str
    content_hash: str  # sha256 of image bytes + captions: the ss_dataset_hash
    metadata: dict


def _named(paths: list[Path], root: Path) -> str:
    shown = ", ".join(str(p.relative_to(root)) for p in paths[:MAX_NAMED])
    more = f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else ""
    return shown + more


def load_dataset(root: str | Path, trigger: str = "") -> TrainingDataset:
    """Scan and check a dataset folder; raise one BadInputError naming every bad file."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(root, "the dataset folder does not exist")
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise BadInputError(root, "not a dataset folder: it has no images/ folder (expected images/ + captions/)")
    captions_dir = root / "captions"
    metadata: dict = {}
    meta_path = root / "metadata.json"
    if meta_path.is_file():
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInputError(meta_path, f"not valid JSON ({exc}); fix or delete it") from exc
        if not isinstance(metadata, dict):
            raise BadInputError(meta_path, "expected a JSON object")

    files = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInputError(images_dir, f"no images ({', '.join(IMAGE_SUFFIXES)})")
    missing: list[Path] = []
    unreadable: list[Path] = []
    empty: list[Path] = []
    items: list[DatasetItem] = []
    digest = hashlib.sha256()
    for path in files:
        caption_path = captions_dir / f"{path.stem}.txt"
        if not caption_path.is_file():
            beside = path.with_suffix(".txt")  # kohya layout: caption beside the image
            if beside.is_file():
                caption_path = beside
            else:
                missing.append(path)
                continue
        try:
            data = path.read_bytes()
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                width, height = img.size
                has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            unreadable.append(path)
            continue
        try:
            caption = caption_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            unreadable.append(caption_path)
            continue
        if not caption:
            empty.append(caption_path)
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(data).digest() + caption.encode() + b"\0")
        items.append(DatasetItem(path, caption, width, height, has_alpha))
    problems = []
    if missing:
        problems.append(f"{len(missing)} image(s) without a caption in captions/: {_named(missing, root)}")
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable file(s): {_named(unreadable, root)}")
    if empty:
        problems.append(f"{len(empty)} empty caption(s): {_named(empty, root)}")
    if problems:
        raise BadInputError(root, "; ".join(problems) + " — fix or remove these files, then run again")
    trigger = trigger or str(metadata.get("trigger") or metadata.get("trigger_word") or "")
    name = str(metadata.get("character") or root.name)
    return TrainingDataset(root, tuple(items), trigger or name, name, digest.hexdigest(), metadata)


# -- buckets ---------------------------------------------------------------------------
def make_buckets(resolution: int, min_size: int, max_size: int, step: int) -> list[tuple[int, int]]:
    """kohya's bucket set (one enumeration with the dataset stage: :mod:`animlora.buckets`)."""
    from animlora.buckets import enumerate_buckets

    return enumerate_buckets(resolution, step, min_size, max_size)


def assign_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log space) to the image's."""
    from animlora.buckets import nearest_bucket

    return nearest_bucket(width / height, buckets)


def load_pixels(
    path: Path, size: tuple[int, int], *, flip: bool = False
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """RGB in [-1, 1] (3, H, W) composited on white, the alpha mask in [0, 1] (1, H, W), and
    the crop's (top, left): resized to cover ``size`` and centre-cropped (kohya's resize-then-crop)."""
    from PIL import Image

    target_w, target_h = size
    with Image.open(path) as img:
        img = img.convert("RGBA")
        scale = max(target_w / img.width, target_h / img.height)
        new_w, new_h = max(target_w, round(img.width * scale)), max(target_h, round(img.height * scale))
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
        left, top = (new_w - target_w) // 2, (new_h - target_h) // 2
        img = img.crop((left, top, left + target_w, top + target_h))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        rgba = np.asarray(img, dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # transparent → white
    return (rgb * 2.0 - 1.0).transpose(2, 0, 1).copy(), alpha.transpose(2, 0, 1).copy(), (top, left)


# -- captions --------------------------------------------------------------------------
def process_caption(
    caption: str, rng: np.random.Generator, *, shuffle: bool, keep_tokens: int, dropout: float
) -> str:
    """Caption dropout, then kohya's shuffle: comma-separated tags after the first
    ``keep_tokens`` are shuffled (the trigger word stays in front)."""
    if dropout > 0 and rng.random() < dropout:
        return ""
    if not shuffle:
        return caption
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    head, tail = tags[:keep_tokens], tags[keep_tokens:]
    order = rng.permutation(len(tail))
    return ", ".join(head + [tail[i] for i in order])


def step_rng(seed: int, *parts: int) -> np.random.Generator:
    """A generator keyed by (seed, parts): every random choice of a step depends only on its
    position, so a resumed run makes exactly the choices an uninterrupted one makes."""
    return np.random.default_rng([seed & 0xFFFFFFFF, *parts])


@dataclass(frozen=True)
class Batch:
    indices: tuple[int, ...]  # positions in TrainingDataset.items
    bucket: tuple[int, int]
    flips: tuple[bool, ...]


def epoch_batches(
    buckets_of: list[tuple[int, int]], *, batch_size: int, repeats: int, seed: int, epoch: int, flip: bool
) -> list[Batch]:
    """One epoch's batches: items of a bucket together, order shuffled by (seed, epoch)."""
    rng = step_rng(seed, 1, epoch)
    groups: dict[tuple[int, int], list[int]] = {}
    for index, bucket in enumerate(buckets_of):
        groups.setdefault(bucket, []).extend([index] * repeats)
    batches: list[Batch] = []
    for bucket in sorted(groups):
        members = [groups[bucket][i] for i in rng.permutation(len(groups[bucket]))]
        for start in range(0, len(members), batch_size):
            chunk = tuple(members[start : start + batch_size])
            flips = tuple(bool(rng.random() < 0.5) if flip else False for _ in chunk)
            batches.append(Batch(chunk, bucket, flips))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def steps_per_epoch(buckets_of: list[tuple[int, int]], batch_size: int, repeats: int) -> int:
    counts: dict[tuple[int, int], int] = {}
    for bucket in buckets_of:
        counts[bucket] = counts.get(bucket, 0) + repeats
    return sum(math.ceil(n / batch_size) for n in counts.values())
