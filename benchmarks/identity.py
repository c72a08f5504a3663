"""Identity quality on a project without rendered truth: label its tracks by eye once, then
score embedders, light correction, track pooling and learned metrics against the labels.

    # 1. numbered sheets, one thumbnail per track (the track's middle member), to label by eye
    PYTHONPATH=src python benchmarks/identity.py sheets PROJECT -o OUT
    # 2. write OUT/labels.json: {"<sheet number>": "buck" | "frank" | ... | "-" (not a character)
    #    | "x" (several characters in one mask, or unsure: left out of every score)}
    # 3. score variants (each runs embed + cluster on a scratch copy of PROJECT's catalog)
    PYTHONPATH=src python benchmarks/identity.py score PROJECT OUT/labels.json [--variants a,b,...]

On rendered footage with truth (cgi-bench: film.mp4, masks/, truth.json) no labelling is
needed: every instance's label comes from the truth masks (as benchmarks/quality.py does),
and each variant re-runs prefilter + embed + cluster on a scratch copy of PROJECT (a project
that ran at least to segment), so what reaches the clusterer is part of the measure:

    PYTHONPATH=src python benchmarks/identity.py truth PROJECT TRUTH [--variants a,b,...]
        [--set section.key=value ...] [--json OUT.json]

It prints, per variant, the character instances that reach the clusterer (and, by reason,
those the prefilter left out), the ARI and purities of benchmarks/quality.py, each cluster's
majority character and composition, and whether the confusable pair shares a cluster.

Scores (labelled character instances only; "-" = scenery/prop, counted as its own class
only in ``ari_all``):
- ``ari``: adjusted Rand index over clustered (non-noise) character instances;
- ``min_purity`` / ``purity``: per cluster, share of its majority character (character-majority
  clusters) / instance-weighted;
- ``noise``: share of character instances left in noise;
- ``nn_other_shot``: share of character instances whose nearest neighbour from *another shot*
  (in the space clustered) is the same character — the truth-free-clustering view of an
  embedder;
- ``coverage``: per character, its instances in a cluster whose majority is that character
  (what can reach its dataset), of its labelled instances; ``noise_by_character``: those in noise;
- ``pair_together``: for each pair of characters, whether one cluster holds >= max(2, 10%)
  of each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

VARIANTS = {
    # name: settings overrides
    "default": {},
    "still_keep": {"cluster": {"still": "keep"}},
    "still_keep_shot_light": {"cluster": {"still": "keep"}, "embed": {"shot_light": "on"}},
    "no_split": {"cluster": {"track_split": 0.0}},
    "no_split_shot_light": {"cluster": {"track_split": 0.0}, "embed": {"shot_light": "on"}},
    "shot_light_off": {"embed": {"shot_light": "off"}},
    "shot_light": {"embed": {"shot_light": "on"}},
    "linear": {"cluster": {"metric": "linear"}},
    "mlp": {"cluster": {"metric": "mlp"}},
    "shot_light_linear": {"embed": {"shot_light": "on"}, "cluster": {"metric": "linear"}},
    "shot_light_mlp": {"embed": {"shot_light": "on"}, "cluster": {"metric": "mlp"}},
    "color_instance_old": {"embed": {"shot_light": "off"}, "cluster": {"unit": "instance", "part_merge": 0.0}},
    "color": {"embed": {"shot_light": "off"}},
    "color_shotlight": {"embed": {"shot_light": "on"}},
    "color_shotlight_linear": {"embed": {"shot_light": "on"}, "cluster": {"metric": "linear"}},
    "color_shotlight_mlp": {"embed": {"shot_light": "on"}, "cluster": {"metric": "mlp"}},
    "color_linear": {"embed": {"shot_light": "off"}, "cluster": {"metric": "linear"}},
    "color_mlp": {"embed": {"shot_light": "off"}, "cluster": {"metric": "mlp"}},
    "color_mlp_instance": {"embed": {"shot_light": "off"}, "cluster": {"metric": "mlp", "unit": "instance"}},
    "color_mlp_seed1": {"embed": {"shot_light": "off"}, "cluster": {"metric": "mlp"}, "project": {"seed": 1}},
    "color_track_nopartmerge": {"embed": {"shot_light": "off"}, "cluster": {"part_merge": 0.0}},
    "color_instance_partmerge": {"embed": {"shot_light": "off"}, "cluster": {"unit": "instance"}},
    "no_merge": {"cluster": {"merge_similarity": 1.0}},
    "merge_095": {"cluster": {"merge_similarity": 0.95}},
    "mlp_no_merge": {"cluster": {"metric": "mlp", "merge_similarity": 1.0}},
    "unit_instance": {"cluster": {"unit": "instance"}},
    "shot_light_off_no_merge": {"embed": {"shot_light": "off"}, "cluster": {"merge_similarity": 1.0}},
    "attach_off": {"cluster": {"attach_noise": 0.0}},
    "attach_1.1": {"cluster": {"attach_noise": 1.1}},
    "attach_1.3": {"cluster": {"attach_noise": 1.3}},
    "track_join_0.96": {"cluster": {"track_join": 0.96}},
    "track_join_0.955": {"cluster": {"track_join": 0.955}},
    "mcs_8": {"cluster": {"min_cluster_size": 8}},
    "leaf": {"cluster": {"selection": "leaf"}},
    "min_samples_4": {"cluster": {"min_samples": 4}},
    # the second noise pass and the track join (defaults since session 5: 1.4 / 2 rounds / 0.96)
    "before_margin": {"cluster": {"attach_margin": 0.0, "track_join": 1.0}},
    "margin_off": {"cluster": {"attach_margin": 0.0}},
    "track_join_off": {"cluster": {"track_join": 1.0}},
    "margin_1.35": {"cluster": {"attach_margin": 1.35}},
    "margin_1.5": {"cluster": {"attach_margin": 1.5}},
    "margin_rounds_1": {"cluster": {"attach_rounds": 1}},
    "margin_rounds_3": {"cluster": {"attach_rounds": 3}},
}


# descriptor constants of backends/embedding/color.py a variant overrides (not settings): the
# vectors' key gets the variant's name, so the cache never mixes them with the default's
COLOUR_VARIANTS: dict[str, dict] = {
    "gw0": {"color.GREY_WORLD": 0.0},
    "gw03": {"color.GREY_WORLD": 0.3},
    "cast0": {"light.MIN_CAST": 0.0},  # every shot corrected (shot light version 1)
    "cast02": {"light.MIN_CAST": 0.2},
    "cast04": {"light.MIN_CAST": 0.4},
}
_COLOUR_DEFAULTS: dict = {}


def _settings(variant: str) -> dict:
    return VARIANTS[variant.split(":")[0]]


def _colour_constants(variant: str) -> None:
    """``name:constvariant`` runs ``name`` with constants of the colour descriptor or of the
    per-shot light changed (and their VERSION, hence the vectors' key, marked)."""
    from animlora.backends.embedding import color
    from animlora.identity import light

    modules = {"color": color, "light": light}
    if not _COLOUR_DEFAULTS:
        for v in COLOUR_VARIANTS.values():
            for k in v:
                mod, _, name = k.partition(".")
                _COLOUR_DEFAULTS[k] = getattr(modules[mod], name)
        for mod in modules:
            _COLOUR_DEFAULTS[f"{mod}.VERSION"] = modules[mod].VERSION
    for k, v in _COLOUR_DEFAULTS.items():
        mod, _, name = k.partition(".")
        setattr(modules[mod], name, v)
    _, _, extra = variant.partition(":")
    if extra:
        for k, v in COLOUR_VARIANTS[extra].items():
            mod, _, name = k.partition(".")
            setattr(modules[mod], name, v)
            modules[mod].VERSION = f"{_COLOUR_DEFAULTS[mod + '.VERSION']}{extra}"


def _tracks(db: Path) -> list[tuple[str, list[tuple[str, str, str | None]]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    table = "identity_instances"
    if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
        raise SystemExit("error: run embed first (identity_instances is empty)")
    groups: dict[str, list] = defaultdict(list)
    for row in con.execute(f"SELECT instance_id, path, track_id, shot_id FROM {table} ORDER BY instance_id"):
        groups[row["track_id"] or row["instance_id"]].append((row["instance_id"], row["path"], row["shot_id"]))
    return sorted(groups.items())


def _write_grid(tiles: list[np.ndarray], out: Path, columns: int, rows: int, gap: tuple[int, int],
                fill: int) -> None:
    """Tiles (all one size, RGB) laid out ``columns`` x ``rows`` a sheet, ``gap`` (x, y) px
    apart on a ``fill`` grey, written as ``out/tracks_NN.png``."""
    import cv2

    if not tiles:
        return
    th, tw = tiles[0].shape[:2]
    step = columns * rows
    for s in range(0, len(tiles), step):
        chunk = tiles[s : s + step]
        sheet = np.full((-(-len(chunk) // columns) * (th + gap[1]), columns * (tw + gap[0]), 3), fill, np.uint8)
        for k, tile in enumerate(chunk):
            r, c = divmod(k, columns)
            y, x = r * (th + gap[1]), c * (tw + gap[0])
            sheet[y : y + th, x : x + tw] = tile
        cv2.imwrite(str(out / f"tracks_{s // step:02d}.png"), sheet[..., ::-1])


def sheets(project: Path, out: Path, size: int = 112, columns: int = 10) -> None:
    import cv2

    from animlora.identity.sheets import thumbnail

    out.mkdir(parents=True, exist_ok=True)
    tracks = _tracks(project / "catalog.sqlite")
    index = {}
    tiles = []
    for n, (key, members) in enumerate(tracks):
        iid, path, _ = members[len(members) // 2]
        p = Path(path) if Path(path).is_absolute() else project / path
        tile = thumbnail(p, size).copy()
        cv2.putText(tile, str(n), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, f"x{len(members)}", (2, size - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 160), 1)
        tiles.append(tile)
        index[str(n)] = key
    _write_grid(tiles, out, columns, rows=6, gap=(2, 2), fill=255)
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(tracks)} tracks, {sum(len(m) for _, m in tracks)} instances -> {out}")


def strips(project: Path, out: Path, size: int = 90, per: int = 4, columns: int = 4, rows: int = 10) -> None:
    """One strip per track (up to ``per`` evenly spaced members, first ... last), in film
    order, numbered, 40 a sheet; ``index.json`` maps each number to its track, shot, frames and
    instance ids — what /work/notes/film_labels.json was labelled from."""
    import cv2

    from animlora.identity.sheets import thumbnail

    out.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    found = con.execute("SELECT ii.instance_id, ii.path, ii.track_id, ii.shot_id, f.frame_index FROM identity_instances ii "
                        "JOIN instances i ON i.id = ii.instance_id JOIN frames f ON f.id = i.frame_id "
                        "ORDER BY ii.shot_id, ii.track_id, f.frame_index").fetchall()
    groups: dict[str, list] = defaultdict(list)
    for r in found:
        groups[r[2] or r[0]].append(r)
    keys = sorted(groups, key=lambda k: (groups[k][0][4], k))
    tiles, index = [], {}
    for n, key in enumerate(keys):
        members = groups[key]
        picks = [members[round(j)] for j in np.linspace(0, len(members) - 1, min(per, len(members)))]
        strip = np.full((size, size * per + 4, 3), 255, np.uint8)
        for j, r in enumerate(picks):
            path = Path(r[1]) if Path(r[1]).is_absolute() else project / r[1]
            strip[:, 4 + j * size : 4 + (j + 1) * size] = thumbnail(path, size)[:size, :size]
        cv2.putText(strip, str(n), (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(strip, f"x{len(members)} f{members[0][4]}", (6, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 160), 1)
        tiles.append(strip)
        index[str(n)] = {"track": key, "shot": members[0][3], "frames": [r[4] for r in members],
                         "instances": [r[0] for r in members]}
    _write_grid(tiles, out, columns, rows, gap=(10, 6), fill=90)
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(keys)} tracks, {len(found)} instances -> {out}")


def _scores(truth: dict[str, str], assign: dict[str, str], shots: dict[str, str | None],
            vectors: dict[str, np.ndarray] | None, detail: bool = False) -> dict:
    from sklearn.metrics import adjusted_rand_score

    chars = [i for i, t in truth.items() if t != "-" and i in assign]
    clustered = [i for i in chars if assign[i] != "noise"]
    result: dict = {"character_instances": len(chars), "noise": round(1 - len(clustered) / max(len(chars), 1), 3)}
    result["ari"] = round(adjusted_rand_score([truth[i] for i in clustered], [assign[i] for i in clustered]), 4)
    every = [i for i in truth if i in assign and assign[i] != "noise"]
    result["ari_all"] = round(adjusted_rand_score([truth[i] for i in every], [assign[i] for i in every]), 4)
    members: dict[str, list[str]] = defaultdict(list)
    for i in every:
        members[assign[i]].append(truth[i])
    purities, weighted, clusters = [], 0, []
    for cid, labels in sorted(members.items(), key=lambda kv: -len(kv[1])):
        top, count = Counter(labels).most_common(1)[0]
        if detail:
            mix = " ".join(f"{k}:{v}" for k, v in Counter(labels).most_common())
            clusters.append(f"{cid} [{top} {count}/{len(labels)}, {count / len(labels):.3f}] {mix}")
        else:
            clusters.append(f"{top}:{count}/{len(labels)}")
        weighted += count
        if top != "-":
            purities.append(count / len(labels))
    result["min_purity"] = round(min(purities), 3) if purities else None
    result["purity"] = round(weighted / max(len(every), 1), 3)
    result["clusters"] = clusters
    names = sorted({truth[i] for i in chars})
    together = []
    for a in names:
        for b in names:
            if a < b:
                na, nb = sum(truth[i] == a for i in chars), sum(truth[i] == b for i in chars)
                for labels in members.values():
                    c = Counter(labels)
                    if c[a] >= max(2, 0.1 * na) and c[b] >= max(2, 0.1 * nb):
                        together.append(f"{a}+{b}")
                        break
    result["pair_together"] = together
    result["coverage"], result["noise_by_character"] = _coverage(truth, assign, members)
    if vectors:
        ids = [i for i in chars if i in vectors]
        hit, ok = nearest_other_shot(np.stack([vectors[i] for i in ids]), [truth[i] for i in ids],
                                     [shots.get(i) or i for i in ids])
        result["nn_other_shot"] = round(float(hit[ok].mean()), 4) if ok.any() else None
    return result


def nearest_other_shot(vectors: np.ndarray, labels: list, shots: list,
                       apart: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (whether its nearest row by cosine from another shot, and with ``apart`` from
    another group too, has its label; whether it has such a row at all)."""
    from animlora.identity.clustering import normalise

    v = normalise(vectors)
    sim = v @ v.T
    for groups in (shots, apart):
        if groups is not None:
            g = np.asarray(groups, dtype=object)
            sim[g[:, None] == g[None, :]] = -np.inf
    lab = np.asarray(labels, dtype=object)
    return lab[np.argmax(sim, 1)] == lab, np.isfinite(sim.max(1))


def _coverage(truth: dict[str, str], assign: dict[str, str],
              members: dict[str, list[str]]) -> tuple[dict[str, dict], dict[str, int]]:
    """Per labelled character: how many of its instances sit in a cluster whose majority is
    that character (``covered``, and that share of its labelled instances: the instances that
    can reach its dataset), and how many are noise."""
    majority = {cid: Counter(labels).most_common(1)[0][0] for cid, labels in members.items()}
    coverage, noise = {}, {}
    for name in sorted({t for i, t in truth.items() if t != "-" and i in assign}):
        mine = [i for i, t in truth.items() if t == name and i in assign]
        covered = sum(1 for i in mine if assign[i] != "noise" and majority.get(assign[i]) == name)
        coverage[name] = {"covered": covered, "of": len(mine), "share": round(covered / len(mine), 3)}
        noise[name] = sum(1 for i in mine if assign[i] == "noise")
    return coverage, noise


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_labels(labels_path: Path, project: Path) -> dict[str, str]:
    """Instance id -> label. Two formats: per instance (``{"instances": {id: {"label": ...}}}``,
    /work/notes/film_labels.json: ``other`` is scenery, ``mixed`` is left out) or per sheet
    number (``{"<n>": label}`` beside the ``index.json`` of ``sheets``)."""
    data = json.loads(labels_path.read_text())
    if "instances" in data:
        names = {"other": "-", "mixed": "x"}
        labels = {i: names.get(e["label"], e["label"]) for i, e in data["instances"].items()}
        return {i: v for i, v in labels.items() if v != "x"}
    index = json.loads((labels_path.parent / "index.json").read_text())
    by_track = {index[k]: v for k, v in data.items()}
    tracks = dict(_tracks(project / "catalog.sqlite"))
    return {iid: by_track[key] for key, members in tracks.items() if key in by_track and by_track[key] != "x"
            for iid, _, _ in members}


def score_project(project: Path, labels_path: Path) -> dict:
    """Score a project's clusters as they are (no re-run) against instance labels."""
    truth = load_labels(labels_path, project)
    con = sqlite3.connect(f"file:{project / 'catalog.sqlite'}?mode=ro", uri=True)
    names = dict(con.execute("SELECT id, name FROM clusters"))
    assign = {i: (c if c == "noise" else names.get(c, c))
              for i, c in con.execute("SELECT instance_id, cluster_id FROM cluster_assignments")}
    noise_ids = {c for c, n in names.items() if n == "noise"}
    assign = {i: ("noise" if c in noise_ids else c) for i, c in assign.items()}
    return _scores(truth, assign, {}, None, detail=True)


def score(project: Path, labels_path: Path, variants: list[str], extra: dict | None = None) -> dict:
    from animlora.config import load_settings
    from animlora.identity.clustering import normalise
    from animlora.identity.geometry import build_constraints, project_geometry
    from animlora.identity.inputs import load_identity_instances
    from animlora.identity.metric import learn_metric
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.stages.embed import get_embedder, load_vectors
    from animlora.workspace import Workspace

    truth = load_labels(labels_path, project)
    tracks = dict(_tracks(project / "catalog.sqlite"))
    shots = {iid: shot for members in tracks.values() for iid, _, shot in members}
    results = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        scratch = Path(tmp) / "p"
        shutil.copytree(project, scratch, ignore=shutil.ignore_patterns("clustered", "frames", "training_data", "inpainting",
                                                                 "enhancement", "deocclusion", "captions"),
                        symlinks=True)
        for name in ("segmentation", "filtered"):  # the cut-outs: link, do not copy
            if (project / name).exists():
                shutil.rmtree(scratch / name, ignore_errors=True)
                (scratch / name).symlink_to((project / name).resolve())
        ws = Workspace(scratch)
        for variant in variants:
            loaded = load_settings(scratch, overrides=_merge(_settings(variant), extra or {}))
            _colour_constants(variant)
            Runner(ws, loaded, force=True).run([get_stage("embed"), get_stage("cluster")])
            with ws.open_catalog() as catalog:
                assign = dict(catalog.rows("SELECT instance_id, cluster_id FROM cluster_assignments"))
                embedder, _ = get_embedder(loaded.settings if hasattr(loaded, "settings") else loaded)
                ids, vecs = load_vectors(catalog, embedder.key)
                refs = {r.instance_id: r for r in load_identity_instances(catalog, scratch)}
                s = (loaded.settings if hasattr(loaded, "settings") else loaded).cluster
                geometry = project_geometry(catalog, scratch, ids)
            frames = [refs[i].frame_id for i in ids]
            trk = [refs[i].track_id for i in ids]
            links = build_constraints(frames, trk, geometry)
            x, _ = learn_metric(normalise(vecs), trk, sorted(links.cannot), s.metric)
            vectors = dict(zip(ids, x, strict=True))
            results[variant] = _scores(truth, assign, shots, vectors)
            print(variant, json.dumps({k: v for k, v in results[variant].items()}), flush=True)
    return results


def truth_labels(project: Path, truth_dir: Path) -> dict[str, str]:
    """Every segmented instance's truth label (a character's name or ``not_character``), as
    benchmarks/quality.py assigns it (> 50 % of the instance's mask)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality

    truth = quality.Truth.load(truth_dir)
    proj = quality.Project(project)
    video = proj.video(truth, None)
    crop = json.loads(video["crop"]) if video["crop"] else None
    seg = proj.folder("segment", "segmentation")
    by_frame: dict[int, list] = defaultdict(list)
    for r in proj.rows("SELECT i.id, i.mask_path, f.frame_index FROM instances i JOIN frames f ON f.id = i.frame_id "
                       "WHERE i.video_id = ? ORDER BY i.id", (video["id"],)):
        by_frame[int(r["frame_index"])].append(r)
    out = {}
    for index, rows in sorted(by_frame.items()):
        masks = []
        for r in rows:
            path = Path(r["mask_path"])
            masks.append(quality._read_png(path if path.is_absolute() else seg / path) >= 128)
        frame = quality.score_frame(truth.mask(index, crop, masks[0].shape[:2]), masks)
        out.update({r["id"]: truth.names[k] for r, k in zip(rows, frame.labels, strict=True)})
    return out


def _parse_sets(pairs: list[str]) -> dict:
    import yaml

    tree: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return tree


def score_truth(project: Path, truth_dir: Path, variants: list[str], extra: dict | None = None,
                keep: Path | None = None) -> dict:
    """Each variant: prefilter + embed + cluster on a scratch copy, scored against the truth."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality

    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.stages.embed import get_embedder, load_vectors
    from animlora.workspace import Workspace

    labels = truth_labels(project, truth_dir)
    names = quality.Truth.load(truth_dir).names
    ids_of = {v: k for k, v in names.items()}
    truth_of = {i: ids_of[name] for i, name in labels.items()}
    confusable = quality.Truth.load(truth_dir).data.get("confusable_pairs") or []
    results = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        scratch = keep or Path(tmp) / "p"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        for entry in project.iterdir():
            if entry.name in ("segmentation", "frames", "plates"):  # read only: link
                (scratch / entry.name).symlink_to(entry.resolve())
            elif entry.name not in ("clustered", "training_data", "captions", "deoccluded", "evaluation"):
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, scratch / entry.name)
        ws = Workspace(scratch)
        for variant in variants:
            loaded = load_settings(scratch, overrides=_merge(_settings(variant), extra or {}))
            _colour_constants(variant)
            Runner(ws, loaded, force=True).run([get_stage("prefilter"), get_stage("embed"), get_stage("cluster")])
            with ws.open_catalog() as catalog:
                pre = {r[0]: r[1] for r in catalog.rows("SELECT instance_id, reason FROM prefilter_results")}
                clusters = {r["id"]: r for r in catalog.rows("SELECT id, name, is_noise FROM clusters")}
                cluster_of = dict(catalog.rows("SELECT instance_id, cluster_id FROM cluster_assignments"))
                embedder, _ = get_embedder(loaded.settings)
                vids, vecs = load_vectors(catalog, embedder.key)
                shot_of = dict(catalog.rows("SELECT id, shot_id FROM instances"))
            noise = {c for c, r in clusters.items() if r["is_noise"]}
            ident = quality.score_identity(truth_of, cluster_of, noise, names,
                                           {c: r["name"] for c, r in clusters.items()}, confusable)
            chars = [i for i in pre if truth_of.get(i, 0) > 0]
            lost = Counter(pre[i] for i in chars if pre[i])
            reached = {"characters": sum(1 for i in chars if not pre[i]),
                       "not_character": sum(1 for i in pre if truth_of.get(i, 0) == 0 and not pre[i]),
                       "characters_segmented": len(chars), "characters_left_out": dict(lost.most_common())}
            # nearest neighbour from another shot (in the embedder's space): the same character?
            keep = [k for k, i in enumerate(vids) if truth_of.get(i, 0) > 0]
            nn = None
            if len(keep) > 1:
                hit, ok = nearest_other_shot(np.asarray(vecs)[keep], [truth_of[vids[k]] for k in keep],
                                             [shot_of.get(vids[k]) or vids[k] for k in keep])
                nn = round(float(hit[ok].mean()), 4) if ok.any() else None
            results[variant] = {"reached": reached, "nn_other_shot": nn, **ident}
            _print_truth(variant, results[variant])
    return results


def _print_truth(variant: str, r: dict) -> None:
    reached = r["reached"]
    apart = all(not p["co_clustered"] for p in r["confusable"])
    print(f"== {variant}: reach {reached['characters']}/{reached['characters_segmented']} characters "
          f"(+{reached['not_character']} not) left out {reached['characters_left_out']}; "
          f"ARI {r['ari']} min purity {r['min_purity']} noise {r['noise']}/{r['instances']} "
          f"nn_other_shot {r['nn_other_shot']} confusable {'apart' if apart else 'TOGETHER'}")
    for c in r["clusters"]:
        print(f"     {c['cluster']:<14} {c['size']:>3} {c['majority']:<14} {c['purity']:.3f} {c['composition']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sheets = sub.add_parser("sheets")
    p_sheets.add_argument("project", type=Path)
    p_sheets.add_argument("-o", "--out", type=Path, required=True)
    p_score = sub.add_parser("score")
    p_score.add_argument("project", type=Path)
    p_score.add_argument("labels", type=Path)
    p_score.add_argument("--variants", default=",".join(VARIANTS))
    p_score.add_argument("--json", type=Path)
    p_score.add_argument("--min-cluster-size", type=int, default=0, help="override cluster.min_cluster_size")
    p_strips = sub.add_parser("strips", help="one strip of up to 4 members per track, to label by eye")
    p_strips.add_argument("project", type=Path)
    p_strips.add_argument("-o", "--out", type=Path, required=True)
    p_film = sub.add_parser("film", help="score a project's clusters as they are against instance labels")
    p_film.add_argument("project", type=Path)
    p_film.add_argument("labels", type=Path)
    p_film.add_argument("--json", type=Path)
    p_truth = sub.add_parser("truth")
    p_truth.add_argument("project", type=Path)
    p_truth.add_argument("truth", type=Path)
    p_truth.add_argument("--variants", default="default")
    p_truth.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value (every variant)")
    p_truth.add_argument("--json", type=Path)
    p_truth.add_argument("--keep", type=Path, help="run in this folder (replaced) and keep it, to look at")
    args = parser.parse_args(argv)
    if args.command == "truth":
        results = score_truth(args.project, args.truth, args.variants.split(","), _parse_sets(args.sets), args.keep)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    if args.command == "strips":
        strips(args.project, args.out)
        return 0
    if args.command == "film":
        r = score_project(args.project, args.labels)
        print(json.dumps({k: v for k, v in r.items() if k not in ("clusters", "coverage", "noise_by_character")}))
        print("  coverage (in a cluster whose majority is the character) / noise:")
        for name, c in r["coverage"].items():
            print(f"    {name:<10} {c['covered']:>4}/{c['of']:<4} {c['share']:.3f}   noise {r['noise_by_character'][name]}")
        print("  clusters [majority count/size, purity] composition:")
        for c in r["clusters"]:
            print("   ", c)
        if args.json:
            args.json.write_text(json.dumps(r, indent=1))
        return 0
    if args.command == "sheets":
        sheets(args.project, args.out)
        return 0
    extra = {"cluster": {"min_cluster_size": args.min_cluster_size}} if args.min_cluster_size else {}
    results = score(args.project, args.labels, args.variants.split(","), extra)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
