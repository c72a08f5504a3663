"""Why a labelled character's tracks sit in noise: per noise track, the distance to its own
character's clusters and to every other cluster, in the vectors the cluster stage used.

    python benchmarks/noise_distances.py PROJECT [--who buck] [--labels /work/notes/film_labels.json]

Labels are moved to PROJECT by ``ledger.transfer`` (frame + box). A cluster is the character
most of its labelled members are. Per noise unit (a track's noise members, or a lone instance)
holding a member labelled ``--who``: its members' labels, the nearest cluster and the second
(the ratio ``attach_by_margin`` tests against ``cluster.attach_margin``), the nearest track of a
``--who`` cluster and of any other cluster (unit vectors, Euclidean, each track its normalised
mean). Vectors are read as stored (after embed's shot light), in the raw embedder space: a
``cluster.metric`` other than ``none`` is not applied. Clusters are the final ones.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from ledger import transfer


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--who", default="buck")
    parser.add_argument("--labels", type=Path, default=Path("/work/notes/film_labels.json"))
    args = parser.parse_args(argv)
    con = sqlite3.connect(f"file:{args.project / 'catalog.sqlite'}?mode=ro", uri=True)
    labels = transfer(args.labels, con)
    model = None
    report = args.project / "clustered" / "cluster_report.json"
    if report.is_file():
        import json

        model = json.loads(report.read_text()).get("model")
    rows = con.execute(
        "SELECT i.instance_id, e.vector, n.track_id, n.shot_id FROM identity_instances i JOIN embeddings e "
        "ON e.content_hash = i.content_hash AND e.model = ? JOIN instances n ON n.id = i.instance_id "
        "ORDER BY i.instance_id", (model,)).fetchall()
    if not rows:
        print(f"error: no vectors of model {model!r}", file=sys.stderr)
        return 2
    ids = [r[0] for r in rows]
    x = _unit(np.stack([np.frombuffer(r[1], "<f4") for r in rows]).astype(np.float64))
    cluster = dict(con.execute("SELECT a.instance_id, CASE WHEN c.is_noise THEN '' ELSE c.name END "
                               "FROM cluster_assignments a JOIN clusters c ON c.id = a.cluster_id"))
    lab = [cluster.get(i, "") for i in ids]
    owner = {}
    for c in sorted(set(lab) - {""}):
        counts = Counter(labels[i] for i, m in zip(ids, lab, strict=True) if m == c and i in labels)
        owner[c] = counts.most_common(1)[0][0] if counts else "?"
        print(f"{c:<14} {owner[c]:<8} {dict(counts)}")
    units: dict[tuple[str, str], list[int]] = defaultdict(list)
    for k, (row, m) in enumerate(zip(rows, lab, strict=True)):
        units[(row[2] or row[0], m)].append(k)
    tracks = [(m, _unit(x[v].mean(0))) for (_, m), v in units.items() if m]
    tv, tc = np.stack([v for _, v in tracks]), np.asarray([m for m, _ in tracks])
    print(f"\nnoise units holding {args.who}: track  n  labels  nearest (2nd/1st)  own  other  other/own")
    for (track, m), members in sorted(units.items()):
        held = Counter(labels.get(ids[k]) for k in members)
        if m or not held.get(args.who):
            continue
        d = np.linalg.norm(tv - _unit(x[members].mean(0)), axis=1)
        near = sorted((float(d[tc == c].min()), c) for c in owner)
        own = min((dd for dd, c in near if owner[c] == args.who), default=float("nan"))
        other = min(dd for dd, c in near if owner[c] != args.who)
        (d1, c1), (d2, _) = near[0], near[1]
        print(f"{track[-14:]:>14} {len(members):2d} {dict(held)}  {c1}:{owner[c1]} ({d2 / d1:.2f})  "
              f"{own:.3f} {other:.3f} {other / own:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
