"""The prop-track gate's evidence on a finished project: every track of a cluster still in most
of its frames, with its still share, median flat fill, rim ratio and verdict.

    PYTHONPATH=src python benchmarks/prop_tracks.py PROJECT [--labels truth.json] [--all]

Reads the project's catalog read-only (segment measures, cluster members, embeddings) and runs
the dataset gate's own code (``animlora.curation.gate.prop_tracks``) per cluster, as the dataset
stage does with the project's settings (``prefilter.max_static``; flat off in 2D). ``--all``
prints every track with two or more known ``static``, not only those still in most frames; a track
never measured (no known ``static``, still ``nan``) is always printed.
``--labels``: a JSON object instance id -> name (e.g. truth labels) shown per track.
The numbers behind docs/dataset.md ("A prop inside a character's cluster").
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    from animlora.config import load_settings
    from animlora.curation import gate
    from animlora.stages.dataset import DatasetStage

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--labels", type=Path, help="JSON: instance id -> label, shown per track")
    ap.add_argument("--all", action="store_true", help="every track, not only those still in most frames")
    args = ap.parse_args(argv)
    db = args.project / "catalog.sqlite"
    if not db.is_file():
        print(f"error: {db}: no catalog", file=sys.stderr)
        return 2
    p = load_settings(args.project).settings.prefilter
    labels = json.loads(args.labels.read_text()) if args.labels else {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    members = dict(con.execute("SELECT instance_id, character FROM character_members"))
    in_dataset = {r[0] for r in con.execute("SELECT instance_id FROM dataset_items")}
    rows = [{"id": r[0], "track_id": r[1], "frame_id": r[2], "bbox": r[3], "measures": gate.parse_measures(r[4])}
            for r in con.execute("SELECT id, track_id, frame_id, bbox, measures FROM instances")]
    track_of = {row["id"]: row["track_id"] for row in rows}
    parts = gate.track_parts(rows)  # as the dataset stage: a track whose boxes jump is judged in parts too
    _, tracks = DatasetStage._measures(rows, parts)
    model_count = defaultdict(int)
    rows = con.execute("SELECT instance_id, model, vector FROM embeddings").fetchall()
    for _, model, _ in rows:
        model_count[model] += 1
    model = max(sorted(model_count), key=lambda k: model_count[k]) if model_count else None
    vectors = {iid: np.frombuffer(v, "<f4") for iid, m, v in rows if m == model}
    by_cluster: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for iid, character in members.items():
        by_cluster[character].append((iid, track_of.get(iid)))
    print(f"{args.project}: embeddings {model}, prefilter.max_static {p.max_static}, "
          f"flat test {'on' if p.max_flat <= 1.0 else 'off (2D)'}")
    for character, group in sorted(by_cluster.items()):
        flagged = gate.prop_tracks(group, tracks, {i: vectors[i] for i, _ in group if i in vectors},
                                   p.max_static, p.max_flat <= 1.0, parts)
        rim = gate.track_rim([(i, t) for i, t in group if t], vectors)
        for track in sorted({t for _, t in group if t}):
            measured = [m for m in tracks.get(track, ()) if m]
            known = [m for m in measured if m.get("static") is not None]
            if not known and measured:  # never measured: judged on flat and rim alone (gate.UNMEASURED_RIM)
                share = float("nan")
                flat = float(np.median([float(m.get("flat") or 0.0) for m in measured]))
            elif len(known) < gate.MIN_TRACK_KNOWN:
                continue
            else:
                share = sum(float(m["static"]) >= p.max_static for m in known) / len(known)
                if share < gate.PROP_STILL_SHARE and not args.all:
                    continue
                flat = float(np.median([float(m.get("flat") or 0.0) for m in known]))
            near, typical = rim.get(track, (float("nan"), float("nan")))
            ids = [i for i, t in group if t == track]
            verdict = "PROP" if any(i in flagged for i in ids) else "-"
            names = sorted({labels.get(i, "") for i in ids} - {""})
            print(f"{character:>14} {track:>28}  still {share:4.2f}  flat {flat:4.2f}  "
                  f"rim {near / typical if typical else float('nan'):5.2f}  "
                  f"members {len(ids):2d}  in dataset {sum(i in in_dataset for i in ids):2d}  {verdict}"
                  + (f"  {names}" if names else ""))
        for part in sorted({parts[i] for i in flagged if parts.get(i, track_of.get(i)) != track_of.get(i)}):
            ids = [i for i, _ in group if parts.get(i) == part]
            names = sorted({labels.get(i, "") for i in ids} - {""})
            print(f"{character:>14} {part:>28}  a part of a track whose boxes jump: PROP  members {len(ids):2d}"
                  + (f"  {names}" if names else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
