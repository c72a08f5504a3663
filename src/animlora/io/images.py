"""Image read/write shared by every stage.

``read_image`` turns every readable image into 8-bit RGB or RGBA (numpy, HxWxC, RGB order)
and every unreadable one into one BadInputError naming the file: zero-byte, truncated,
not an image. Conversions a person would not expect (CMYK, 16-bit, grayscale, palette)
are done and reported through ``ImageInfo.converted_from`` so a stage can list them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animlora.errors import BadInputError
from animlora.io.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int
    height: int
    converted_from: str | None  # original PIL mode when it was not RGB/RGBA, e.g. "CMYK", "I;16"


MAX_PIXELS = 120_000_000  # 8K x 8K is 67 megapixels; beyond this an image is a mistake or an attack


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted, temp files excluded. Entries named
    like images that are not readable files (a folder, a broken link, a symlink loop) are
    left out with a warning naming them."""
    import logging

    root = Path(folder)
    found = []
    for p in root.rglob("*"):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        if p.is_file():
            found.append(p)
        else:
            what = "a folder" if p.is_dir() else "a broken link or a link loop" if p.is_symlink() else "not a file"
            logging.getLogger("animlora").warning("%s: skipped, named like an image but %s", p, what)
    return sorted(found)


def read_image_info(path: str | Path, mode: str = "RGB") -> tuple[np.ndarray, ImageInfo]:
    """Decode fully (so truncation is caught) into ``mode`` ("RGB" or "RGBA")."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise BadInputError(p, "no such file") from exc
    if size == 0:
        raise BadInputError(p, "empty file (0 bytes)")
    try:
        with Image.open(p) as img:
            if img.width * img.height > MAX_PIXELS:  # checked before decoding: a small file can unpack to GBs
                raise BadInputError(p, f"{img.width}x{img.height} pixels is more than animlora decodes "
                                       f"({MAX_PIXELS // 1_000_000} megapixels; a decompression bomb?)")
            img.load()
            original = img.mode
            if original in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit: scale to 8 bits instead of clipping (PIL's convert would clip).
                arr16 = np.asarray(img, dtype=np.uint32)
                top = 65535 if arr16.max() > 255 else 255
                img = Image.fromarray((arr16 * 255 // top).astype(np.uint8), "L")
            converted = img.convert(mode)
    except UnidentifiedImageError as exc:
        raise BadInputError(p, "not an image (unrecognised format)") from exc
    except Image.DecompressionBombError as exc:
        raise BadInputError(p, f"too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(p, f"corrupt or truncated image ({exc})") from exc
    arr = np.asarray(converted)
    plain = original in ("RGB", "RGBA") or (original == "P" and mode in ("RGB", "RGBA"))
    info = ImageInfo(p, arr.shape[1], arr.shape[0], None if plain else original)
    return arr, info


def read_image(path: str | Path, mode: str = "RGB") -> np.ndarray:
    return read_image_info(path, mode)[0]


def encode_image(array: np.ndarray, suffix: str, jpeg_quality: int = 95, png_compression: int = 3,
                 png_fast: bool = False) -> bytes:
    """Encode RGB/RGBA/gray uint8 with OpenCV (fast); PNG keeps alpha. ``png_compression``
    0-9 (zlib level): 1 writes a 1280x720 RGBA frame in ~60% of the time of 3, ~5% larger.
    ``png_fast`` (intermediate files and the datasets' images): zlib level 1 with libpng's "up" filter on every row
    instead of its per-row filter search — a 1280x720 RGBA frame in ~55% of level 1's CPU
    (~40% of level 3's), a cut-out in ~40% of level 3's, files no larger; same pixels."""
    import cv2

    if array.ndim == 3 and array.shape[2] == 4:
        bgr = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim == 3:
        bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    else:
        bgr = array
    params: list[int] = []
    if suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    elif suffix.lower() == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1 if png_fast else png_compression]
        if png_fast and hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise ValueError(f"cannot encode an image as {suffix}")
    return buf.tobytes()


def write_image(path: str | Path, array: np.ndarray, jpeg_quality: int = 95, png_compression: int = 3,
                png_fast: bool = False) -> Path:
    """Atomic write (temp name + rename); format from the suffix (options: :func:`encode_image`)."""
    target = Path(path)
    data = encode_image(array, target.suffix, jpeg_quality, png_compression, png_fast)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
