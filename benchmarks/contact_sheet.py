"""Contact sheets to count images by eye: a numbered grid of thumbnails with their names.

    python benchmarks/contact_sheet.py PATH [-o OUT] [--thumb 160] [--cols 8] [--per-page 48] [--label name|frame]
        [--background R,G,B]

PATH may be
- a folder of images (sheets of that folder);
- a dataset folder (``images/`` + ``metadata.json``): its images, labelled with the source
  frame index and instance when ``--label frame``;
- a project folder (``project.yaml``): one set of sheets per dataset folder
  (``training_data/*/``) and per cluster folder (``clustered/*/``); ``--what datasets`` or
  ``--what clusters`` for one kind only.

Writes ``OUT/<name>_pNN.png`` (OUT defaults to ``./sheets``); prints each sheet's path and
how many images it shows. Every thumbnail carries its number (1-based, across pages) so a
count by eye can name the images it counts. RGBA images are shown on grey; ``--background 0,90,160``
(a blue no film set has) shows what the alpha holds: a rim left around a cut, the set filled into a
gap, a half-transparent patch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
GREY = (128, 128, 128)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT)


def sheet(paths: Sequence[Path], labels: Sequence[str], out: Path, title: str = "", thumb: int = 160,
          cols: int = 8, first: int = 1, background: tuple[int, int, int] = GREY) -> Path:
    """One grid PNG: each image fitted in ``thumb`` x ``thumb`` (RGBA on ``background``), its number and
    label below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    cols = max(1, min(cols, len(paths) or 1))
    rows = max(1, (len(paths) + cols - 1) // cols)
    cell_w, cell_h, head = thumb + 6, thumb + 30, 18 if title else 0
    grid = Image.new("RGB", (cols * cell_w, rows * cell_h + head), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((4, 3), title, fill=(255, 255, 255), font=font)
    for k, (path, label) in enumerate(zip(paths, labels, strict=True)):
        r, c = divmod(k, cols)
        x, y = c * cell_w + 3, r * cell_h + head + 3
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGBA", "LA", "P"):
                    im = im.convert("RGBA")
                    bg = Image.new("RGBA", im.size, (*background, 255))
                    im = Image.alpha_composite(bg, im)
                im = im.convert("RGB")
                im.thumbnail((thumb, thumb))
                grid.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
        except OSError as exc:
            draw.text((x + 4, y + thumb // 2), f"unreadable: {exc}"[:30], fill=(255, 80, 80), font=font)
        draw.text((x, y + thumb + 2), f"#{first + k}", fill=(255, 220, 0), font=font)
        draw.text((x, y + thumb + 14), label[: thumb // 6], fill=(200, 200, 200), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def pages(paths: Sequence[Path], labels: Sequence[str], out_dir: Path, name: str, thumb: int, cols: int,
          per_page: int, background: tuple[int, int, int] = GREY) -> list[tuple[Path, int]]:
    made = []
    total = len(paths)
    n_pages = max(1, (total + per_page - 1) // per_page)
    for p in range(n_pages):
        lo, hi = p * per_page, min(total, (p + 1) * per_page)
        title = f"{name}: {total} images" + (f" (page {p + 1}/{n_pages}: #{lo + 1}-#{hi})" if n_pages > 1 else "")
        path = sheet(paths[lo:hi], labels[lo:hi], out_dir / f"{name}_p{p + 1:02d}.png", title, thumb, cols, lo + 1,
                     background)
        made.append((path, hi - lo))
    return made


def dataset_items(folder: Path, label: str) -> tuple[list[Path], list[str]]:
    """A dataset folder's images, labelled by file name or by source frame + instance."""
    images = list_images(folder / "images") if (folder / "images").is_dir() else list_images(folder)
    if label != "frame" or not (folder / "metadata.json").is_file():
        return images, [p.stem for p in images]
    try:
        records = json.loads((folder / "metadata.json").read_text())["images"]
        by_file = {Path(r["file"]).name: r for r in records}
    except (ValueError, KeyError, TypeError):
        by_file = {}
    labels = []
    for p in images:
        r = by_file.get(p.name)
        if r and r.get("frame_index") is not None:
            labels.append(f"f{r['frame_index']} {str(r.get('instance_id', ''))[-3:]}")
        else:
            labels.append(p.stem)
    return images, labels


def targets(path: Path, what: str) -> list[tuple[str, Path, bool]]:
    """(sheet name, folder, is a dataset folder) for everything under ``path`` to show."""
    if (path / "project.yaml").is_file():
        found = []
        if what in ("all", "datasets"):
            found += [(f"dataset_{d.name}", d, True) for d in sorted((path / "training_data").glob("*/"))
                      if (d / "images").is_dir()]
        if what in ("all", "clusters"):
            found += [(f"cluster_{d.name}", d, False) for d in sorted((path / "clustered").glob("*/"))
                      if d.is_dir() and list_images(d)]
        return found
    if (path / "images").is_dir():
        return [(path.name, path, True)]
    return [(path.name, path, False)]


def _colour(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give R,G,B, each 0-255 (e.g. 0,90,160)")
    return int(parts[0]), int(parts[1]), int(parts[2])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=Path("sheets"))
    ap.add_argument("--thumb", type=int, default=160)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--per-page", type=int, default=48)
    ap.add_argument("--label", choices=("name", "frame"), default="name")
    ap.add_argument("--what", choices=("all", "datasets", "clusters"), default="all")
    ap.add_argument("--background", type=_colour, default=GREY, help="R,G,B behind RGBA images (default 128,128,128)")
    args = ap.parse_args(argv)
    if not args.path.is_dir():
        print(f"error: {args.path}: not a folder", file=sys.stderr)
        return 2
    found = targets(args.path, args.what)
    if not found:
        print(f"error: {args.path}: no dataset or cluster folders with images", file=sys.stderr)
        return 2
    for name, folder, is_dataset in found:
        if is_dataset:
            images, labels = dataset_items(folder, args.label)
        else:
            images = list_images(folder)
            labels = [p.stem for p in images]
        for sheet_path, n in pages(images, labels, args.out, name, args.thumb, args.cols, args.per_page,
                                   args.background):
            print(f"{sheet_path}  {n} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
