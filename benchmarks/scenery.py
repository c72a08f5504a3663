"""The dataset stage's scenery check on a finished project: per cluster, the motion evidence it
judges by and its verdict, with each cluster's truth where known.

    PYTHONPATH=src python benchmarks/scenery.py PROJECT [--truth QUALITY.json]

For every cluster (its members as the dataset stage reads them, with the other instances of
their tracks), ``animlora.curation.gate.stillness``: the shots in which it is still (more than
half its instances with a known ``static`` at ``STILL_STATIC``) of its shots with a known
``static``, and the instances; then ``gate.not_character``'s verdict. With ``--truth`` (the JSON
that ``benchmarks/quality.py PROJECT TRUTH --json OUT`` writes: its ``instance_truth``) each
cluster's truth majority. Read only. The numbers behind docs/dataset.md, "Not a character".
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path


def clusters(project: Path) -> list[dict]:
    """Per cluster: name, members, the stillness evidence and the verdict (named clusters are
    trusted by the dataset stage and judged here all the same)."""
    from animlora.curation import gate
    from animlora.curation.sources import project_members
    from animlora.stages.dataset import DatasetStage
    from animlora.workspace import Workspace

    with Workspace(project).open_catalog(reading=True) as catalog:
        members = project_members(catalog, project)
        rows = DatasetStage._instances(catalog)
    measures, _ = DatasetStage._measures(rows)
    by_track = gate.rows_by_track(rows)
    by_char = defaultdict(list)
    for m in members:
        by_char[m.character].append(m)
    out = []
    for character, group in sorted(by_char.items()):
        evidence, shots = DatasetStage._with_mates(group, measures, by_track)
        out.append({"character": character, "members": [m.instance_id for m in group],
                    "stillness": gate.stillness(evidence, shots)._asdict(),
                    "verdict": gate.not_character(evidence, shots=shots)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--truth", type=Path, help="benchmarks/quality.py's JSON for this project")
    args = ap.parse_args(argv)
    truth = json.loads(args.truth.read_text())["instance_truth"] if args.truth else {}
    for c in clusters(args.project):
        s = c["stillness"]
        label = ""
        if truth:
            label, count = Counter(truth.get(i, "?") for i in c["members"]).most_common(1)[0]
            label = f"  truth {label} {count}/{len(c['members'])}"
        verdict = c["verdict"].split(" (")[0] or "character"
        print(f"{c['character']:<14} {len(c['members']):>4} members  still in {s['still_shots']:>2} of "
              f"{s['shots']:>2} shots  ({s['still']} of {s['instances']} instances)  {verdict}{label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
