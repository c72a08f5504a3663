"""Replay the segment stage's track linking on a finished project: which tracks a change to
``link_tracks`` moves, and, against truth, how many links join two characters.

    PYTHONPATH=src python benchmarks/tracks.py PROJECT [--against REV] [--truth QUALITY.json]

For every shot, the project's instances (their final masks and frames, from the catalog, read
only) are linked again by this tree's ``animlora.backends.segmentation.instances.link_tracks``
and compared with the tracks the project stored, or with ``--against REV``'s ``link_tracks``
(that revision's ``instances.py``, loaded beside this tree). Printed: each shot whose tracks
differ, with the instances that changed track; and with ``--truth`` (the JSON that
``benchmarks/quality.py PROJECT TRUTH --json OUT`` writes: its ``instance_truth``), per linker the
links (consecutive members of one track) between two different characters and between the same
one (links with a non-character are not counted).

It replays on the *final* masks: the stage links inside the shot pass, twice, on the instances
of that moment (before parts are merged and mixed masks split), so this is a quick measure (a
film in seconds, where a run from segment takes a quarter of an hour), not the stage's result;
a change it shows is then run for real. The numbers behind docs/quality.md, "Session 39".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODULE = "src/animlora/backends/segmentation/instances.py"


def load_shot(project: Path, db: sqlite3.Connection, shot: str) -> tuple[list, list, list[str], list[str | None]]:
    """(instances, frames, instance ids, stored track ids) of one shot, frames in order."""
    from PIL import Image

    from animlora.backends.segmentation.base import Instance

    rows = db.execute("SELECT i.id, f.path, i.mask_path, i.bbox, i.track_id FROM instances i "
                      "JOIN frames f ON f.id = i.frame_id WHERE i.shot_id = ? "
                      "ORDER BY f.frame_index, i.id", (shot,)).fetchall()
    paths = list(dict.fromkeys(r[1] for r in rows))
    frames = [np.asarray(Image.open(project / "frames" / p).convert("RGB")) for p in paths]
    found, ids, stored = [], [], []
    for iid, path, mask_path, bbox, track in rows:
        x, y, w, h = json.loads(bbox)
        mask = np.asarray(Image.open(project / "segmentation" / mask_path).convert("L"), np.float32) / 255.0
        found.append(Instance(frame=paths.index(path), bbox=(x, y, w, h), alpha=mask[y:y + h, x:x + w], score=1.0))
        ids.append(iid)
        stored.append(track)
    return found, frames, ids, stored


def linker_at(rev: str, tmp: Path) -> Callable:
    """``link_tracks`` as revision ``rev`` has it."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{MODULE}"], check=True,
                          capture_output=True, text=True).stdout
    path = tmp / "instances_against.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("instances_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.link_tracks


def fellows(tracks: Sequence[object]) -> list[frozenset[int]]:
    """Per instance, the indices of its track's members (track ids themselves differ between linkers)."""
    by: dict[object, set[int]] = defaultdict(set)
    for k, t in enumerate(tracks):
        by[t].add(k)
    return [frozenset(by[t]) for t in tracks]


def links(tracks: Sequence[object], labels: Sequence[str | None]) -> tuple[int, int]:
    """(links between two characters, links within one): consecutive members of each track."""
    last: dict[object, str | None] = {}
    wrong = right = 0
    for t, label in zip(tracks, labels, strict=True):
        before = last.get(t)
        if before and label and "not_character" not in (before, label):
            wrong += before != label
            right += before == label
        last[t] = label
    return wrong, right


def main(argv: Sequence[str] | None = None) -> int:
    from animlora.backends.segmentation.instances import link_tracks
    from animlora.config import load_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--against", help="a git revision: compare with its link_tracks, not the stored tracks")
    ap.add_argument("--truth", type=Path, help="benchmarks/quality.py's --json output (its instance_truth)")
    args = ap.parse_args(argv)
    db_path = args.project / "catalog.sqlite"
    if not db_path.is_file():
        print(f"error: {db_path}: no catalog", file=sys.stderr)
        return 2
    similarity = load_settings(args.project).settings.segment.track_similarity
    truth = json.loads(args.truth.read_text())["instance_truth"] if args.truth else {}
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    shots = [r[0] for r in db.execute("SELECT DISTINCT shot_id FROM instances WHERE shot_id IS NOT NULL")]
    other = f"@{args.against}" if args.against else "stored"
    counts = {"this tree": [0, 0], other: [0, 0]}
    changed = 0
    with tempfile.TemporaryDirectory() as tmp:
        before_linker = linker_at(args.against, Path(tmp)) if args.against else None
        for shot in sorted(shots):
            found, frames, ids, stored = load_shot(args.project, db, shot)
            now = [i.track for i in link_tracks(found, frames, similarity)]
            before = [i.track for i in before_linker(found, frames, similarity)] if before_linker else stored
            labels = [truth.get(i) for i in ids]
            for name, tracks in (("this tree", now), (other, before)):
                wrong, right = links(tracks, labels)
                counts[name][0] += wrong
                counts[name][1] += right
            moved = [k for k, (a, b) in enumerate(zip(fellows(now), fellows(before), strict=True)) if a != b]
            if moved:
                changed += 1
                print(f"{shot}: tracks differ; instances whose track changed: "
                      + ", ".join(ids[k].split("_", 1)[-1] + (f" ({labels[k]})" if labels[k] else "") for k in moved))
    print(f"{len(shots)} shots, {changed} with other tracks (this tree against {other})")
    if truth:
        for name, (wrong, right) in counts.items():
            print(f"  {name:10s}: {wrong} links between two characters, {right} within one")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
