"""The ``cluster`` stage: embeddings -> one folder per character.

1. tracks are the unit: a track whose members are two characters is cut first; each track's
   robust mean (identity/tracks.py), optionally in a metric learned from the film's own tracks
   and frames (identity/metric.py); HDBSCAN on the instances pulled onto their tracks (turbo
   path for 100k+, see identity/clustering.py), on the tracks that move only: a track still
   in every frame then joins a cluster within its scale, or is scenery (identity/still.py);
   min_cluster_size shrinks for a short film (``min_cluster_size()``);
2. track-aware constraints: must-link by track, cannot-link between two instances of one frame
   that do not touch (identity/geometry.py, identity/constraints.py);
3. merge clusters that are one character under different light (and hold no cannot-link pair),
   and clusters that are a part of another (a head cut from its body); then a noise track
   within one cluster's own spread (and no other's) joins it (``cluster.attach_noise``); two
   clusters whose closest tracks are nearly one join (``cluster.track_join``); a noise track whose
   nearest track is one cluster's, every other cluster clearly farther, joins it
   (``cluster.attach_margin``, ``attach_rounds``); last, a second look at the noise: a small,
   tight group seen in several shots and apart from every cluster becomes one (``cluster.second_look``);
4. names from ``characters/*.yaml`` references; negative references send clusters to noise; a
   noise track about as near two clusters of one name (one character split by light) joins them;
5. outputs: ``character_<n>/`` (or the name), ``noise/``, ``cluster_report.json``,
   ``cluster_visualization.png``, ``contact_sheets/<folder>.jpg``;
6. catalog: ``clusters``, ``cluster_assignments`` (the base clustering),
   ``identity_distances`` (per instance: distance to its track, its cluster and the nearest
   other cluster, to re-tune bounds without re-running) and ``character_members`` (the base
   with the review decisions replayed).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from animlora.backends.registry import release
from animlora.errors import BadInputError, MissingDependencyError, ModelNotFoundError, StageError
from animlora.identity.clustering import NOISE, ClusterParams, cluster_embeddings, normalise, relabel_by_size
from animlora.identity.constraints import (
    apply_must_link,
    attach_by_margin,
    attach_by_name,
    attach_noise,
    drop_nearer_elsewhere,
    join_by_tracks,
    merge_parts,
    merge_similar,
    recluster_noise,
    split_cannot_link,
)
from animlora.identity.decisions import NOISE_ID, refresh_members
from animlora.identity.geometry import FrameGeometry, build_constraints, project_geometry
from animlora.identity.inputs import InstanceRef, load_identity_instances
from animlora.identity.light import MIN_CAST
from animlora.identity.metric import learn_metric
from animlora.identity.naming import embed_references, match_clusters, references
from animlora.identity.sheets import contact_sheet, visualization
from animlora.identity.still import join_still, still_units
from animlora.identity.tracks import pool_tracks, pulled, settle_jumps, split_tracks
from animlora.io.files import atomic_path, atomic_write_json, file_sha256, portable
from animlora.pipeline.stage import (
    ItemOutput,
    Progress,
    RunSummary,
    Stage,
    StageContext,
    StageJob,
    WorkItem,
    digest,
)
from animlora.records import cluster as cluster_records
from animlora.records import decisions
from animlora.records import embed as embed_records
from animlora.records import segment as segment_records
from animlora.records.embed import load_vectors
from animlora.stages.embed import get_embedder

REPORT = "cluster_report.json"
VISUALIZATION = "cluster_visualization.png"
SHEETS = "contact_sheets"


@dataclass(frozen=True)
class ClusterInput:
    model: str
    ids: list[str]
    vectors: np.ndarray
    refs: list[InstanceRef]
    reference_folders: list[Path]
    project_root: Path | None
    geometry: FrameGeometry
    still: list[bool | None]  # per instance: unchanged relative to the set (None: unknown)
    light: np.ndarray | None = None  # per instance: log of its shot's light gains (shot light on)
    close: list[bool] | None = None  # per instance: framed as a close-up (prefilter's close_up)


# two clusters seen in plain light (the mean over their members of the strongest log light gain
# applied within this) do not merge (step 3): the per-shot light's own bound for such a cast
LIGHT_MERGE = MIN_CAST


def reference_folders(job: StageJob) -> list[Path]:
    folders = []
    if not job.standalone:
        folders.append(job.workspace_root / "characters")
    if job.settings.cluster.characters_dir:
        given = Path(job.settings.cluster.characters_dir).expanduser()
        folders.append(given if given.is_absolute() else job.workspace_root / given)
    return folders


def _reference_cutter(settings: Any) -> Callable[[np.ndarray], np.ndarray | None]:
    """RGB in, the RGBA cut-out of the largest thing the project's segmenter finds in it out (or
    None): how a reference picture (a screenshot: ``naming.picture_box``) becomes comparable with
    the clusters' cut-outs. The segmenter is loaded on first use; one that cannot be loaded cuts nothing."""
    from animlora.backends.segmentation.cutouts import largest_cutout
    from animlora.stages.segment import held_segmenter

    def cut(rgb: np.ndarray) -> np.ndarray | None:
        try:
            segmenter, _ = held_segmenter(settings)
        except (ModelNotFoundError, MissingDependencyError):
            return None
        return largest_cutout(segmenter, rgb, settings.segment.alpha_threshold, settings.segment.padding)

    return cut


# how reference pictures are compared and what names do (part of the naming's fingerprint where
# references exist)
REFERENCE_RULE = ("pictures: no transparency, or a solid rectangle in transparent margins",
                  "cut out by the segment backend; noise between the clusters of one name attached")


def _references_fingerprint(folders: list[Path], project_root: Path | None) -> list[tuple[str, str]]:
    """Character specs and their reference images (also those a spec names outside its folder),
    so editing them re-runs the naming."""
    seen: dict[str, str] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    seen[str(path)] = file_sha256(path)
    given = [os.path.normpath(path) for ref in references(folders, project_root) for path in ref.paths]
    for path in given:
        if path not in seen:
            seen[path] = file_sha256(Path(path))
    return list(seen.items()) + ([REFERENCE_RULE] if given else [])


class ClusterStage(Stage):
    name = "cluster"
    folder = "clustered"
    version = "5"
    upstream = ("embed",)

    def check_inputs(self, job: StageJob) -> None:
        given = job.settings.cluster.characters_dir
        if given:
            folder = reference_folders(job)[-1]
            if not folder.is_dir():
                raise BadInputError(folder, f"cluster.characters_dir = {given!r} is not a folder of <name>.yaml")
        get_embedder(job.settings)  # references are embedded with it: fail now, not after clustering

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        embedder, _ = get_embedder(ctx.settings)
        refs = {r.instance_id: r for r in load_identity_instances(ctx.catalog, ctx.workspace.root)}
        ids, vectors = load_vectors(ctx.catalog, embedder.key)
        if not ids:
            if ctx.job.standalone:
                raise StageError("cluster: no embedded instances; run the embed stage first")
            # a project whose footage had no characters: an empty result, not a failed run
            ctx.extra["empty"] = True
            return []
        folders = reference_folders(ctx.job)
        lineage = [(i, refs[i].content_hash, refs[i].track_id, refs[i].frame_id) for i in ids]
        references = _references_fingerprint(folders, None if ctx.job.standalone else ctx.workspace.root)
        geometry = FrameGeometry() if ctx.job.standalone else project_geometry(ctx.catalog, ctx.workspace.root, ids)
        boxes = [(p.box, str(p.mask)) for _, p in sorted(geometry.placements.items())]
        still = [None] * len(ids) if ctx.job.standalone else _still(ctx, ids)
        light = None if ctx.job.standalone else _shot_light(ctx, embedder.key, [refs[i].shot_id for i in ids])
        close = _close_ups(geometry, len(ids), ctx.settings.prefilter.closeup_min_height)

        def fingerprint(paths: Any) -> str:
            """The item's fingerprint with the paths in (references, boxes) as given."""
            out = digest(digest(digest(embedder.key, lineage, paths[0]), paths[1]), still)
            if light is not None:
                out = digest(out, light.round(4).tolist())
            return digest(out, close)

        payload = ClusterInput(embedder.key, ids, vectors, [refs[i] for i in ids], folders,
                               None if ctx.job.standalone else ctx.workspace.root, geometry, still, light, close)
        # paths inside the project relative to it (a moved project is up to date); earlier
        # releases hashed them absolute
        return [WorkItem("clusters", fingerprint(portable((references, boxes), ctx.workspace.root)), payload,
                         f"{len(ids)} instances", earlier=fingerprint((references, boxes)))]

    # -- the work ---------------------------------------------------------------------
    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput:
        data: ClusterInput = item.payload
        s = job.settings.cluster
        started = time.monotonic()
        raw = normalise(data.vectors)
        # a track whose members are two characters (a tracking slip) is cut in two first
        tracks = split_tracks(raw, [r.track_id for r in data.refs], s.track_split)
        frames = [r.frame_id for r in data.refs]
        geometry = data.geometry if s.track_aware else FrameGeometry()
        links = build_constraints(frames if s.track_aware else [None] * len(raw),
                                  tracks if s.track_aware else [None] * len(raw), geometry)
        constraints: dict[str, Any] = {
            "track_aware": s.track_aware, "unit": s.unit,
            "same_frame_pairs": links.same_frame_pairs, "cannot_link_pairs": len(links.cannot),
            "touching_pairs": len(links.touching), "attached_track_pairs": links.attached_tracks,
            "tracks_split": len({t.split("#")[0] for t in tracks if t and "#" in t})}

        # 1. the metric (learned from the film's own constraints, or the embedder's), tracks, HDBSCAN
        x, metric_info = learn_metric(raw, tracks if s.track_aware else [None] * len(raw), sorted(links.cannot),
                                      s.metric, job.settings.project.seed)
        constraints["metric"] = metric_info
        pool = pool_tracks(x, tracks if s.track_aware and s.unit == "track" else [None] * len(x))
        xc = pulled(x, pool) if s.track_aware and s.unit == "track" else x
        constraints.update(units=pool.tracks, track_outliers=int(pool.outlier.sum()))
        # still tracks (unchanged relative to the set in every frame) do not found clusters
        is_still = still_units(tracks, data.still) if s.still != "keep" else np.zeros(len(xc), bool)
        if (~is_still).sum() < 2 * max(3, s.min_samples + 1):  # too little moves to tell: cluster everything
            is_still[:] = False
        found = ~is_still
        mcs = min_cluster_size(s, int(found.sum()))
        constraints["min_cluster_size"] = mcs
        params = ClusterParams(mcs, s.min_samples, s.pca_dim, s.selection, s.turbo_threshold,
                               s.turbo_sample, s.turbo_pca_dim, job.settings.project.seed)
        result = cluster_embeddings(xc[found], params)
        labels = np.full(len(xc), NOISE, np.int64)
        labels[found] = result.labels
        if is_still.any():
            labels, constraints["still"] = join_still(xc, labels, is_still, tracks)
        progress(1, 5)
        # 2. track constraints
        if s.track_aware:
            labels, moved = apply_must_link(labels, tracks, pool.outlier)
            labels, splits = split_cannot_link(xc, labels, frames, tracks, mcs, links)
            constraints.update(must_link_moved=moved, cannot_link_splits=splits)
        # 3. one character under two lights; a part of a character
        labels, merges = merge_similar(xc, labels, frames, s.merge_similarity, links, data.light, LIGHT_MERGE,
                                       None if data.close is None else np.asarray(data.close, bool),
                                       tracks if s.track_aware else None)
        constraints["merges"] = [{"kept": a, "absorbed": b, "similarity": round(c, 4)} for a, b, c in merges]
        if s.track_aware:
            labels, parts = merge_parts(labels, links, s.part_merge)
            constraints["part_merges"] = [{"kept": a, "absorbed": b, "touching": round(c, 4)} for a, b, c in parts]
        # 3b. noise tracks within a cluster's own spread join it (still tracks were judged already)
        if s.track_aware:
            labels, constraints["noise_attached"] = attach_noise(xc, labels, tracks, links, s.attach_noise,
                                                                 skip=is_still)
            labels, joins = join_by_tracks(xc, labels, tracks, links, s.track_join)
            constraints["track_joins"] = [{"kept": a, "absorbed": b, "similarity": round(c, 4)} for a, b, c in joins]
            # 3c. a noise track next to one cluster's track and clearly farther from every other's joins it; so
            # does a thin cluster (one track, and fewer than mcs views besides): it stands on one clump
            labels, constraints["margin_attached"] = attach_by_margin(xc, labels, tracks, links, s.attach_margin,
                                                                      s.attach_rounds, skip=is_still, thin=mcs)
            # 3d. the part of a track the tracker carried onto another character goes to that one's cluster
            boxes = [p.box if (p := geometry.placements.get(i)) else None for i in range(len(x))]
            if s.track_split > 0:
                labels, constraints["jump_moves"] = settle_jumps(x, labels, tracks, frames, boxes, links.cannot)
        labels = _small_to_noise(labels, mcs)
        # 3e. a second look at the noise: a small, tight group seen in several shots is a character too
        if s.track_aware and s.second_look > 0:
            look = second_look_size(s, mcs)
            before = labels
            labels, constraints["second_look"] = recluster_noise(
                xc, labels, tracks, [r.shot_id for r in data.refs], links, look, s.min_samples, skip=is_still,
                still=is_still, join_similarity=s.merge_similarity, join_margin=s.attach_margin,
                margin_after=s.attach_margin, margin_rounds=s.attach_rounds)
            constraints["second_look"]["min_size"] = look
            # a still track left in noise because its character had no cluster yet (seed 6: the
            # bunny idle through shots 1 and 2, moving only in a few frames of shots 7 and 17)
            # joins the cluster the second look found, by the rule step 1 judged it by
            new = set(np.unique(labels).tolist()) - set(np.unique(before).tolist()) - {NOISE}
            if new and is_still.any():
                labels, constraints["still_after_second_look"] = join_still(xc, labels, is_still, tracks,
                                                                            only=new)
        # 3f. a part of a track its own cluster does not explain (nearer another's centre) goes to noise
        clustered = labels != NOISE  # before 3f: what 3f and a negative name send to noise stays there (4b)
        if s.track_aware:
            labels, constraints["nearer_elsewhere"] = drop_nearer_elsewhere(x, labels, tracks, s.elsewhere_share,
                                                                            frames, boxes)
        progress(2, 5)
        # 4. names from references
        names: dict[int, str] = {}
        matched: dict[int, Any] = {}
        refs = references(data.reference_folders, data.project_root)
        refs_report: list[dict[str, Any]] = []
        if refs:
            embedder, _ = get_embedder(job.settings)
            ref_vectors, refs_report = embed_references(refs, embedder, _reference_cutter(job.settings))
            release("segmentation")  # the matte that cut references out: no later stage wants it
            first = match_clusters(_centroids(raw, labels), ref_vectors, s.name_similarity)
            for label, match in first.items():
                if match.negative:
                    labels[labels == label] = NOISE
            labels = relabel_by_size(labels)
            matched = {k: v for k, v in match_clusters(_centroids(raw, labels), ref_vectors, s.name_similarity).items()
                       if not v.negative}
            # 4b. a noise track between clusters of one name is that character's; the noise the steps
            # above chose (still tracks, parts dropped in 3f, a negative name's clusters) stays noise
            if s.track_aware:
                labels, constraints["named_attached"] = attach_by_name(
                    xc, labels, {k: v.name for k, v in matched.items()}, tracks, links, s.attach_margin,
                    s.attach_rounds, skip=is_still | clustered)
        else:
            labels = relabel_by_size(labels)
        unnamed = 0  # unnamed clusters are numbered on their own, largest first
        for label in sorted(int(v) for v in np.unique(labels) if v != NOISE):
            if label in matched:
                names[label] = matched[label].name
            else:
                names[label] = f"character_{unnamed}"
                unnamed += 1
        progress(3, 5)
        # 5. folders, sheets, report
        out = job.output_dir
        files, clusters, assignments, report_clusters = self._write(job, data, x, labels, names, matched)
        distances = _distances(data, x, labels, clusters, pool)
        progress(4, 5)
        noise = int((labels == NOISE).sum())
        report = {
            "model": data.model,
            "instances": len(labels),
            "clusters": len(names),
            "noise": noise,
            "noise_ratio": round(noise / max(len(labels), 1), 4),
            "method": result.method,
            "method_details": result.details,
            "constraints": constraints,
            "references": refs_report,
            "per_cluster": report_clusters,
            "seconds": round(time.monotonic() - started, 3),
            "settings": s.model_dump(mode="json"),
        }
        atomic_write_json(out / REPORT, report)
        files.append(REPORT)
        medoids = {lab: data.refs[data.ids.index(c["medoid_instance_id"])].path
                   for lab, c in zip(sorted(names), report_clusters, strict=True)}
        visualization(x, labels, names, medoids, out / VISUALIZATION, seed=job.settings.project.seed)
        files.append(VISUALIZATION)
        progress(5, 5)
        return ItemOutput(files=tuple(files), data={"clusters": clusters, "assignments": assignments,
                                                    "distances": distances, "model": data.model})

    def _write(self, job: StageJob, data: ClusterInput, x: np.ndarray, labels: np.ndarray,
               names: dict[int, str], matched: dict[int, Any]):
        s = job.settings.cluster
        out = job.output_dir
        centroids = _centroids(x, labels)
        cent_ids = sorted(centroids)
        cent = normalise(np.stack([centroids[k] for k in cent_ids])) if cent_ids else np.zeros((0, x.shape[1]))
        files: list[str] = []
        used: dict[str, set[str]] = defaultdict(set)
        clusters, assignments, report_clusters = [], [], []

        def place(folder: str, idx: int) -> None:
            ref = data.refs[idx]
            stem = ref.path.stem
            name = f"{stem}.png" if ref.path.suffix.lower() == ".png" else f"{stem}{ref.path.suffix.lower()}"
            if name in used[folder]:
                name = f"{stem}_{ref.instance_id[:8]}{ref.path.suffix.lower()}"
            used[folder].add(name)
            _copy(ref.path, out / folder / name, s.copy_mode)
            files.append(f"{folder}/{name}")

        for row, label in enumerate(cent_ids):
            idx = np.nonzero(labels == label)[0]
            sims = x[idx] @ cent[row]
            order = idx[np.argsort(-sims)]
            member_ids = [data.ids[i] for i in idx]
            cid = "c" + digest("cluster", sorted(member_ids))[:12]
            folder = names[label]
            for i in order:
                place(folder, int(i))
            other = cent @ cent[row]
            other[row] = -np.inf
            near = int(np.argmax(other)) if len(cent_ids) > 1 else None
            sheet = f"{SHEETS}/{folder}.jpg" if f"{SHEETS}/{folder}.jpg" not in files else f"{SHEETS}/{folder}_{cid}.jpg"
            contact_sheet([data.refs[i].path for i in order[: s.contact_sheet_max]], out / sheet, s.thumb_size)
            files.append(sheet)
            medoid = data.ids[int(order[0])]
            cohesion = float(sims.mean())
            clusters.append({"id": cid, "name": folder, "size": len(idx), "medoid_instance_id": medoid,
                             "cohesion": cohesion, "is_noise": 0})
            for i, sim in zip(idx, sims, strict=True):
                assignments.append((data.ids[i], cid, float(1 - sim)))
            refs = [data.refs[i] for i in idx]
            report_clusters.append({
                "id": cid,
                "name": folder,
                "label": label,
                "folder": folder,
                "size": len(idx),
                "tracks": len({r.track_id for r in refs if r.track_id}),
                "shots": len({r.shot_id for r in refs if r.shot_id}),
                "videos": len({r.video_id for r in refs if r.video_id}),
                "medoid_instance_id": medoid,
                "medoid_path": str(data.refs[int(order[0])].path),
                "cohesion": round(cohesion, 4),
                "nearest_cluster": None if near is None else {
                    "name": names[cent_ids[near]], "similarity": round(float(other[near]), 4)},
                "reference_similarity": round(matched[label].similarity, 4) if label in matched else None,
                "contact_sheet": sheet,
            })
        noise_idx = np.nonzero(labels == NOISE)[0]
        for i in noise_idx:
            place("noise", int(i))
            dist = float(1 - (cent @ x[i]).max()) if len(cent_ids) else None
            assignments.append((data.ids[i], NOISE_ID, dist))
        if len(noise_idx):  # what the clustering left out, to judge min_cluster_size at a glance
            sheet = f"{SHEETS}/noise.jpg"
            contact_sheet([data.refs[i].path for i in noise_idx[: s.contact_sheet_max]], out / sheet, s.thumb_size)
            files.append(sheet)
        clusters.append({"id": NOISE_ID, "name": "noise", "size": len(noise_idx), "medoid_instance_id": None,
                         "cohesion": None, "is_noise": 1})
        return files, clusters, assignments, report_clusters

    # -- catalog ----------------------------------------------------------------------
    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        d = output.data
        cluster_records.write_clustering(ctx.catalog, d["clusters"], d["assignments"], d["distances"], d["model"])
        refresh_members(ctx.catalog)

    def forget(self, ctx: StageContext, item_key: str) -> None:
        cluster_records.clear(ctx.catalog)
        decisions.clear_members(ctx.catalog)

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        import json

        path = ctx.output_dir / REPORT
        if ctx.extra.get("empty"):
            cluster_records.clear(ctx.catalog, distances=False)
            decisions.clear_members(ctx.catalog)
            atomic_write_json(path, {"instances": 0, "clusters": 0, "noise": 0, "noise_ratio": 0.0,
                                     "per_cluster": [], "note": "no instances to cluster",
                                     "settings": ctx.settings.cluster.model_dump(mode="json")})
        report = json.loads(path.read_text()) if path.is_file() else {}
        return {k: v for k, v in report.items() if k != "per_cluster"} | {
            "review_decisions_replayed": decisions.count_active(ctx.catalog),
            "character_members": decisions.count_members(ctx.catalog)}


def _distances(data: ClusterInput, x: np.ndarray, labels: np.ndarray, clusters: list[dict], pool: Any) -> list[tuple]:
    """Rows of ``identity_distances`` (records/cluster.py: the distances the clustering decided on)."""
    ids = sorted(int(v) for v in np.unique(labels) if v != NOISE)
    cid_of = {}
    for lab in ids:
        members = sorted(data.ids[i] for i in np.nonzero(labels == lab)[0])
        cid_of[lab] = "c" + digest("cluster", members)[:12]
    cent = normalise(np.stack([x[labels == lab].mean(0) for lab in ids])) if ids else np.zeros((0, x.shape[1]))
    sims = x @ cent.T if ids else np.zeros((len(x), 0))
    rows = []
    for i, iid in enumerate(data.ids):
        lab = int(labels[i])
        own = ids.index(lab) if lab != NOISE else None
        other = sims[i].copy()
        if own is not None:
            other[own] = -np.inf
        near = int(np.argmax(other)) if len(ids) > (0 if own is None else 1) else None
        rows.append((iid, data.refs[i].track_id, int(pool.outlier[i]), round(float(pool.to_unit[i]), 5),
                     cid_of[lab] if own is not None else NOISE_ID,
                     None if own is None else round(float(1 - sims[i, own]), 5),
                     None if near is None else cid_of[ids[near]],
                     None if near is None else round(float(1 - sims[i, near]), 5)))
    return rows


def _close_ups(geometry: FrameGeometry, n: int, min_height: float) -> list[bool] | None:
    """Per instance: framed as a close-up (prefilter's rule on its box and frame); None when
    no placement says."""
    from animlora.stages.prefilter import close_up

    if not geometry.placements:
        return None
    out = []
    for k in range(n):
        p = geometry.placements.get(k)
        out.append(p is not None and p.box is not None and p.frame is not None
                   and close_up({"bbox": list(p.box), "frame": list(p.frame)}, min_height))
    return out


def _still(ctx: StageContext, ids: list[str]) -> list[bool | None]:
    """Per instance: still (segment's ``static`` >= ``prefilter.max_static``), moving, or None."""
    import json

    from animlora.stages.prefilter import still

    wanted = set(ids)
    flags: dict[str, bool | None] = {}
    for iid, measures in segment_records.instance_measures(ctx.catalog).items():
        if iid in wanted:
            try:
                extra = json.loads(measures) if measures else {}
            except ValueError:
                extra = {}
            flags[iid] = still({"extra": extra}, ctx.settings.prefilter)
    return [flags.get(i) for i in ids]


def _shot_light(ctx: StageContext, key: str, shots: list[str | None]) -> np.ndarray | None:
    """Per instance, the log of the light gains the embed stage applied to its shot (when its
    vectors are this key's and carry the shot light)."""
    if "+shotlight" not in key:
        return None
    gains = embed_records.shot_light_gains(ctx.workspace.root, key)
    if not gains:
        return None
    return np.log(np.asarray([gains.get(shot or "", [1.0, 1.0, 1.0]) for shot in shots], np.float64))


def min_cluster_size(s: Any, n: int) -> int:
    """``cluster.min_cluster_size`` for ``n`` instances: at most the setting, and no more than
    ``min_cluster_fraction`` of them (a short film's character is seen in a few dozen
    instances, not hundreds), never under ``max(3, min_samples + 1)``; fraction 0 = the size as set."""
    if s.min_cluster_fraction <= 0:  # off: the size as set
        return int(s.min_cluster_size)
    floor = max(3, s.min_samples + 1)
    return max(floor, min(s.min_cluster_size, int(round(s.min_cluster_fraction * n))))


def second_look_size(s: Any, mcs: int) -> int:
    """The smallest group the second look at the noise keeps: ``second_look`` x the effective
    min_cluster_size, never under max(3, min_samples + 1)."""
    return max(3, s.min_samples + 1, int(round(s.second_look * mcs)))


def _centroids(x: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(lab): x[labels == lab].mean(0) for lab in np.unique(labels) if lab != NOISE}


def _small_to_noise(labels: np.ndarray, min_size: int) -> np.ndarray:
    out = labels.copy()
    for lab in np.unique(labels):
        if lab != NOISE and (labels == lab).sum() < min_size:
            out[labels == lab] = NOISE
    return out


def _copy(src: Path, dest: Path, mode: str) -> None:
    with atomic_path(dest) as tmp:
        if mode == "hardlink":
            try:
                os.link(src, tmp)
                return
            except OSError:
                pass  # another file system: copy instead
        shutil.copyfile(src, tmp)
