"""Where a character's instances go, stage by stage: a ledger of a finished project.

    python benchmarks/ledger.py PROJECT [--labels /work/notes/film_labels.json] [--sheets OUT]

Labels are the film's hand labels (``{"project": ..., "instances": {id: {"label": ...}}}``,
labelled on an older project of the same video): each of this project's instances takes the label
of the labelled instance of the same frame whose box overlaps its box most (IoU >= 0.5). Only
frames both projects sampled are labelled, and only instances the older project kept, so the
counts are a sample, not the whole film: count the rest by eye on the sheets.

Prints per label: instances, prefilter rejects per reason, clustered in a character / noise,
in a dataset, left out by the dataset (its code). ``--sheets OUT`` writes contact sheets of the
prefilter's rejects per reason (largest first, labelled with frame, box, area and label) and of
the noise, to look at what each rule removed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from pathlib import Path

from contact_sheet import pages


def _boxes(con: sqlite3.Connection) -> dict[int, list[tuple[str, list[int]]]]:
    out: dict[int, list[tuple[str, list[int]]]] = defaultdict(list)
    for iid, bbox, index in con.execute("SELECT i.id, i.bbox, f.frame_index FROM instances i JOIN frames f ON f.id = i.frame_id"):
        out[int(index)].append((iid, json.loads(bbox)))
    return out


def _iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def transfer(labels_path: Path, con: sqlite3.Connection) -> dict[str, str]:
    """This project's instance id -> label, through the labelled project's boxes."""
    data = json.loads(labels_path.read_text())
    labelled = data["instances"]
    source = Path(data["project"]) / "catalog.sqlite"
    if not source.is_file():  # the labels name their project; without it, ids are taken as they are
        return {i: e["label"] for i, e in labelled.items()}
    theirs = _boxes(sqlite3.connect(f"file:{source}?mode=ro", uri=True))
    out = {}
    for index, mine in _boxes(con).items():
        for iid, box in mine:
            score, best = max(((_iou(box, b), j) for j, b in theirs.get(index, []) if j in labelled), default=(0.0, ""))
            if score >= 0.5:
                out[iid] = labelled[best]["label"]
    return out


def ledger(project: Path, labels: dict[str, str]) -> dict[str, Counter]:
    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    verdict = {i: (k, r) for i, k, r in con.execute("SELECT instance_id, kept, reason FROM prefilter_results")}
    cluster = dict(con.execute("SELECT a.instance_id, c.name FROM cluster_assignments a JOIN clusters c ON c.id = a.cluster_id"))
    written = {i: c for c, i in con.execute("SELECT character, instance_id FROM dataset_items")}
    left_out = {}
    for meta in sorted(project.glob("training_data/*/metadata.json")):
        for s in json.loads(meta.read_text()).get("skipped", []):
            left_out[s["instance"]] = s["code"]
    out: dict[str, Counter] = defaultdict(Counter)
    for iid, label in labels.items():
        c = out[label]
        c["instances"] += 1
        kept, reason = verdict.get(iid, (None, None))
        if kept == 0:
            c["prefilter " + (reason or "?")] += 1
        elif kept is None:
            c["no prefilter verdict"] += 1
        elif iid in written:
            c["dataset " + written[iid]] += 1
        elif iid in left_out:
            c[f"left out ({left_out[iid]}) of {cluster.get(iid)}"] += 1
        else:
            c[cluster.get(iid, "not clustered")] += 1
    return out


def sheets(project: Path, labels: dict[str, str], out: Path) -> None:
    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT i.id, i.path, i.bbox, i.area_fraction, p.reason FROM instances i JOIN prefilter_results p "
                       "ON p.instance_id = i.id WHERE p.kept = 0 ORDER BY i.area_fraction DESC").fetchall()
    by_reason: dict[str, list] = defaultdict(list)
    for iid, path, bbox, area, reason in rows:
        by_reason[(reason or "?").split(" ")[0]].append((iid, path, json.loads(bbox), area))
    noise = con.execute("SELECT i.id, i.path, i.bbox, i.area_fraction FROM cluster_assignments a JOIN clusters c ON "
                        "c.id = a.cluster_id JOIN instances i ON i.id = a.instance_id WHERE c.is_noise = 1 "
                        "ORDER BY i.shot_id, i.id").fetchall()
    by_reason["noise"] = [(iid, path, json.loads(bbox), area) for iid, path, bbox, area in noise]
    for reason, members in by_reason.items():
        paths = [project / "segmentation" / path for _, path, _, _ in members]
        names = [f"{iid.rsplit('_', 2)[-2]} {b[2]}x{b[3]} {area:.3f} {labels.get(iid, '')}" for iid, _, b, area in members]
        for path, n in pages(paths, names, out, reason.replace(":", "_"), 150, 8, 48):
            print(f"{path}  {n} images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--labels", type=Path, default=Path("/work/notes/film_labels.json"))
    parser.add_argument("--sheets", type=Path, help="write contact sheets of the rejects per reason and of the noise")
    args = parser.parse_args(argv)
    db = args.project / "catalog.sqlite"
    if not db.is_file():
        print(f"error: no catalog in {args.project}", file=sys.stderr)
        return 2
    labels = transfer(args.labels, sqlite3.connect(f"file:{db}?mode=ro", uri=True)) if args.labels.is_file() else {}
    for label, counts in sorted(ledger(args.project, labels).items(), key=lambda kv: -kv[1]["instances"]):
        rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "instances")
        print(f"{label:<10} {counts['instances']:>4}: {rest}")
    if args.sheets:
        sheets(args.project, labels, args.sheets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
