"""What the review page can do, independent of HTTP: the reviewed state of a workspace and
the operations on it. Every operation appends to the decision log and updates
``character_members`` in the same call, so the catalog is always current."""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import secrets
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from animlora.catalog import Catalog
from animlora.errors import AnimloraError, BadInputError, WorkspaceError, WorkspaceLockedError
from animlora.identity import decisions
from animlora.identity.decisions import NOISE_ID, ReviewState
from animlora.io.files import atomic_path, atomic_write_json, character_name_problem, inside
from animlora.records import cluster as cluster_records
from animlora.records import decisions as decision_records
from animlora.records import embed as embed_records
from animlora.records.runs import run_marks
from animlora.workspace import STATE_DIR, Workspace

if TYPE_CHECKING:
    from animlora.records.caption import Caption

EXPORT_MARKER = "export_report.json"
PREVIEW = 6  # thumbnails per cluster card in the overview
SUGGEST = 60  # noise instances offered for one cluster at a time (whole tracks)
ALIKE = 8  # pairs of clusters offered as "the same character?" at a time
ALIKE_PREVIEW = 4  # thumbnails of each cluster of such a pair


class ReviewError(AnimloraError):
    """A review request that cannot be done (unknown cluster, bad name); HTTP 400."""


class StaleStateError(AnimloraError):
    """A decision made on a page showing an older state of the project; HTTP 409, reload."""


class ReviewBusyError(AnimloraError):
    """A run is writing the project; a decision now would interleave with it. HTTP 423."""


STALE = "the project changed since this page was loaded (a stage re-ran or another page decided); reload"


def open_workspace(folder: Path | None) -> Workspace:
    """A project (project.yaml) or a standalone cluster output (.animlora/catalog.sqlite)."""
    if folder is not None and (folder / STATE_DIR / "catalog.sqlite").is_file() and not (folder / "project.yaml").is_file():
        return Workspace.for_output(folder)
    return Workspace.find(folder)


def upstream_key(catalog: Catalog) -> str:
    """Changes whenever a stage the review rests on (embed, cluster) runs again."""
    return hashlib.sha256(repr(run_marks(catalog, ("embed", "cluster"))).encode()).hexdigest()


def check_name(name: str) -> str:
    name = (name or "").strip()
    problem = character_name_problem(name)
    if problem:
        raise ReviewError(problem)
    return name


def check_name_problem(name: str) -> str | None:
    return character_name_problem(name)


class ReviewService:
    """The reviewed state of one workspace, shared by the requests of one server."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.lock = threading.RLock()
        self.thumb_lock = threading.Lock()
        self.boot = secrets.token_hex(4)  # a page from an earlier server is stale too
        self.revision = 0  # decisions made through this server
        with self.catalog() as catalog:
            if cluster_records.count_clusters(catalog) == 0:
                raise WorkspaceError(f"{workspace.root}: nothing to review yet; run the cluster stage first")
            self._load(catalog)

    def _load(self, catalog: Catalog) -> None:
        self.state = decisions.refresh_members(catalog)
        instances = embed_records.identity_instances(catalog)
        self.paths = {r.instance_id: r.path for r in instances}
        self.tracks = {r.instance_id: r.track_id for r in instances}
        self.frames = {r.instance_id: r.frame_id for r in instances}
        self._apart: list[tuple[str, str]] | None = None  # cannot-links, computed when first asked
        self.distance = cluster_records.assignment_distances(catalog)
        self.model = cluster_records.clustered_model(catalog)
        self.input_root = embed_records.input_root(catalog)
        self.upstream = upstream_key(catalog)

    @property
    def version(self) -> str:
        """The state the page shows: the clustering it rests on + the decisions made since."""
        return f"{self.upstream[:12]}.{self.boot}.{self.revision}"

    def _current(self) -> None:
        """Reload when the stages under the review re-ran since this server read them."""
        with self.catalog() as catalog:
            if upstream_key(catalog) != self.upstream:
                self._load(catalog)
                self.revision += 1

    @contextmanager
    def _writing(self, version: str | None, bump: bool = True):
        """Around every decision: one at a time, never during a run (the workspace lock),
        and only on the state the page was showing (``version``; None: not checked).
        ``bump``: the decision changes what the page shows (a caption edit does not)."""
        with self.lock:
            try:
                with self.workspace.lock(wait=0):
                    self._current()
                    if version is not None and version != self.version:
                        raise StaleStateError(STALE)
                    yield
                    if bump:
                        self.revision += 1
            except WorkspaceLockedError as exc:
                raise ReviewBusyError("a run is writing this project; wait for it to finish, then reload") from exc

    def catalog(self) -> Catalog:
        # one connection per call: requests run on a thread pool and sqlite3 connections
        # belong to the thread that opened them
        return self.workspace.open_catalog()

    # -- files ----------------------------------------------------------------------
    def allowed_roots(self) -> list[Path]:
        roots = [self.workspace.root.resolve()]
        if self.input_root:
            roots.append(Path(self.input_root).resolve())
        return roots

    def instance_path(self, instance_id: str) -> Path | None:
        """The cut-out of an instance, only when it lies inside the workspace (or the
        standalone input folder)."""
        stored = self.paths.get(instance_id)
        if stored is None:
            return None
        path = Path(stored)
        path = (path if path.is_absolute() else self.workspace.root / path).resolve()
        if not any(path.is_relative_to(root) for root in self.allowed_roots()) or not path.is_file():
            return None
        return path

    def workspace_file(self, rel: str) -> Path | None:
        """A file under the workspace for a URL path; None for anything outside (traversal)."""
        root = self.workspace.root.resolve()
        try:
            path = (root / rel).resolve()
        except (OSError, ValueError):
            return None
        if not path.is_relative_to(root) or not path.is_file() or STATE_DIR in path.relative_to(root).parts[:1]:
            return None
        return path

    def thumbnail(self, instance_id: str, size: int) -> Path | None:
        from animlora.identity.sheets import thumbnail
        from animlora.io.images import write_image

        source = self.instance_path(instance_id)
        if source is None:
            return None
        cached = self.workspace.state_dir / "thumbs" / str(size) / f"{instance_id}.jpg"
        with self.thumb_lock:  # one writer: two requests for one thumbnail share a temp name
            if not cached.is_file() or cached.stat().st_mtime < source.stat().st_mtime:
                write_image(cached, thumbnail(source, size), jpeg_quality=88)
        return cached

    # -- queries ----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        with self.lock:
            self._current()
            with self.catalog() as catalog:
                can_undo, can_redo = decisions.can_undo_redo(catalog)
                n_decisions = decision_records.count_active(catalog)
            clusters = []
            for group in self.state.live_groups():
                members = self.state.members.get(group.id, set())
                clusters.append({
                    "id": group.id,
                    "name": group.name,
                    "size": len(members),
                    "is_noise": group.is_noise,
                    "note": group.note,
                    "preview": heapq.nsmallest(PREVIEW, members, key=self._closeness),
                })
                clusters[-1]["medoid"] = clusters[-1]["preview"][0] if members else None
            return {
                "project": self.workspace.root.name,
                "instances": len(self.state.assign),
                "characters": len({c["name"] for c in clusters if not c["is_noise"]}),
                "clusters": clusters,
                "can_undo": can_undo,
                "can_redo": can_redo,
                "decisions": n_decisions,
                "version": self.version,
            }

    def _closeness(self, instance: str) -> tuple[bool, float, str]:
        distance = self.distance.get(instance)
        return (distance is None, distance or 0.0, instance)

    def _ordered(self, gid: str) -> list[str]:
        """Members closest to the cluster's centre first (the clustering's distance)."""
        return sorted(self.state.members.get(gid, set()), key=self._closeness)

    def members(self, gid: str, offset: int, limit: int) -> dict[str, Any]:
        with self.lock:
            if gid not in self.state.groups:
                raise ReviewError(f"no cluster {gid!r}")
            ordered = self._ordered(gid)
            return {"id": gid, "name": self.state.groups[gid].name, "total": len(ordered), "offset": offset,
                    "limit": limit, "items": ordered[offset : offset + limit]}

    def suggestions(self, gid: str, limit: int = SUGGEST) -> dict[str, Any]:
        """The noise tracks nearer this cluster than any other, nearest first, whole tracks up
        to ``limit`` instances (see :mod:`animlora.identity.suggest`)."""
        from animlora.identity.suggest import nearest_noise

        with self.lock:
            self._current()
            gid = self._group(gid)
            noise = sorted(self.state.members.get(NOISE_ID, ()))
            # rivals: every other group, "not a character" ones too (a noise track nearest the
            # trees a reviewer set aside is not offered to a character)
            others = [i for g in self.state.live_groups() if g.id not in (gid, NOISE_ID)
                      for i in self.state.members.get(g.id, ())]
            own = sorted(self.state.members.get(gid, ()))
            with self.catalog() as catalog:
                vectors = embed_records.vectors(catalog, self.model, own + others + noise) if noise else {}
            units = nearest_noise(own, others, noise, vectors, self.tracks)
            shown, count = [], 0
            for unit in units:
                if count + len(unit["instances"]) > limit and shown:
                    break
                shown.append(unit)
                count += len(unit["instances"])
            return {"id": gid, "name": self.state.groups[gid].name, "tracks": len(units),
                    "instances": sum(len(u["instances"]) for u in units), "items": shown}

    def _apart_pairs(self) -> list[tuple[str, str]]:
        """Cannot-links over the embedded instances by the cluster stage's rule
        (:func:`animlora.identity.geometry.build_constraints`: two instances of one frame, apart,
        not of one track, on the catalog's tracks): fixed until the stages under the review re-run."""
        if self._apart is None:
            from animlora.identity.geometry import build_constraints, project_geometry

            ids = sorted(self.frames)
            with self.catalog() as catalog:
                geometry = project_geometry(catalog, self.workspace.root, ids)
            links = build_constraints([self.frames[i] for i in ids], [self.tracks.get(i) for i in ids], geometry)
            self._apart = [(ids[i], ids[j]) for i, j in sorted(links.cannot)]
        return self._apart

    def alike(self, limit: int = ALIKE) -> dict[str, Any]:
        """Pairs of character clusters most alike and never seen apart in one frame, most alike
        first (see :mod:`animlora.identity.suggest`); clusters already under one name are one
        character and not offered."""
        from animlora.curation.gate import trusted
        from animlora.identity.suggest import alike_clusters

        with self.lock:
            self._current()
            groups = {g.id: g for g in self.state.live_groups() if not g.is_noise and self.state.members.get(g.id)}
            members = {gid: sorted(self.state.members[gid]) for gid in groups}
            with self.catalog() as catalog:
                vectors = embed_records.vectors(catalog, self.model, [i for m in members.values() for i in m])
            pairs, held = alike_clusters(members, vectors, self.tracks, self._apart_pairs())
            pairs = [p for p in pairs if groups[p["clusters"][0]].name != groups[p["clusters"][1]].name]

            def side(gid: str) -> dict[str, Any]:
                return {"id": gid, "name": groups[gid].name, "size": len(members[gid]),
                        "preview": heapq.nsmallest(ALIKE_PREVIEW, members[gid], key=self._closeness)}

            items = []
            for p in pairs[:limit]:
                # a merge keeps the first one's name: a name not the cluster stage's character_N
                # (curation.gate.trusted), else the larger's
                a, b = sorted(p["clusters"], key=lambda gid: (not trusted(groups[gid].name), -len(members[gid]), gid))
                items.append({"clusters": [side(a), side(b)], "distance": p["distance"]})
            return {"pairs": len(pairs), "seen_apart": held, "items": items}

    # -- operations -------------------------------------------------------------------
    def _group(self, gid: str, allow_noise: bool = False) -> str:
        if gid not in self.state.groups or not (self.state.members.get(gid) or gid == NOISE_ID):
            raise ReviewError(f"no cluster {gid!r}")
        if gid == NOISE_ID and not allow_noise:
            raise ReviewError("noise is not a cluster; move images out of it instead")
        return gid

    def _do(self, action: str, payload: dict[str, Any]) -> None:
        with self.catalog() as catalog:
            decisions.record(catalog, action, payload)
            self.state.apply(action, payload)
            decisions.write_members(catalog, self.state)

    # Every decision takes ``version``: the state the page showed (None: not checked, for
    # callers that hold no page). See _writing.
    def rename(self, gid: str, name: str, version: str | None = None) -> dict[str, Any]:
        with self._writing(version):
            gid = self._group(gid)
            self._do("rename", {"cluster": gid, "snapshot": self.state.snapshot(gid), "name": check_name(name)})
        return self.summary()

    def merge(self, gids: list[str], name: str | None = None, version: str | None = None) -> dict[str, Any]:
        with self._writing(version):
            gids = [self._group(g) for g in dict.fromkeys(gids)]
            if len(gids) < 2:
                raise ReviewError("merge needs two clusters or more")
            payload: dict[str, Any] = {"clusters": gids, "snapshots": [self.state.snapshot(g) for g in gids]}
            if name:
                payload["name"] = check_name(name)
            self._do("merge", payload)
        return self.summary()

    def move(self, instances: list[str], to: str, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        with self._writing(version):
            known = [i for i in dict.fromkeys(instances) if i in self.state.assign]
            if not known:
                raise ReviewError("no known images selected")
            payload: dict[str, Any] = {"instances": known}
            if to == NOISE_ID:
                payload["to"] = NOISE_ID
            elif to == "new":
                payload["to"] = None
                payload["to_name"] = check_name(name or f"character_new_{len(self.state.groups)}")
            else:
                to = self._group(to)
                payload.update(to=to, to_snapshot=self.state.snapshot(to), to_name=self.state.groups[to].name)
            self._do("move", payload)
        return self.summary()

    def not_character(self, gid: str, version: str | None = None) -> dict[str, Any]:
        with self._writing(version):
            gid = self._group(gid)
            self._do("not_character", {"cluster": gid, "snapshot": self.state.snapshot(gid)})
        return self.summary()

    def split(self, gid: str, k: int, version: str | None = None) -> dict[str, Any]:
        """Re-cluster one cluster into ``k`` parts (k-means on its embeddings, seeded)."""
        with self._writing(version):
            gid = self._group(gid)
            members = sorted(self.state.members[gid])
            if not 2 <= k <= len(members):
                raise ReviewError(f"cannot split {len(members)} images into {k} parts")
            parts = self._kmeans_parts(members, k)
            self._do("split", {"cluster": gid, "snapshot": self.state.snapshot(gid), "k": k, "parts": parts})
        return self.summary()

    def _kmeans_parts(self, members: list[str], k: int) -> list[list[str]]:
        from sklearn.cluster import KMeans

        from animlora.identity.clustering import normalise

        with self.catalog() as catalog:
            vec = embed_records.vectors(catalog, self.model, members)
        have = [m for m in members if m in vec]
        if len(have) < k:
            raise ReviewError("the embeddings of this cluster are missing; run embed again")
        x = normalise(np.stack([vec[m] for m in have]))
        labels = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(x)
        sizes = np.bincount(labels, minlength=k)
        order = np.argsort(-sizes, kind="stable")  # the largest part keeps the cluster's name
        return [[m for m, lab in zip(have, labels, strict=True) if lab == part] for part in order]

    def undo(self, version: str | None = None) -> dict[str, Any]:
        return self._replay(decisions.undo, version)

    def redo(self, version: str | None = None) -> dict[str, Any]:
        return self._replay(decisions.redo, version)

    def _replay(self, step, version: str | None) -> dict[str, Any]:
        with self._writing(version), self.catalog() as catalog:
            step(catalog)
            self.state = decisions.refresh_members(catalog)
        return self.summary()

    # -- captions ---------------------------------------------------------------------
    # The caption functions of animlora.records.caption do the catalog work; the service only checks
    # that the caption exists (so an unknown one is a 404, not a silent no-op) and returns the
    # row as the page shows it. Edits are stored verbatim (whitespace tidied): the dataset stage
    # lints them and puts the trigger word first when it composes the set's text files.
    def captions(self, character: str | None, offset: int, limit: int) -> dict[str, Any]:
        from animlora.records.caption import list_captions

        with self.catalog() as catalog:
            rows = list_captions(catalog, character)
        return {"character": character, "total": len(rows), "offset": offset, "limit": limit,
                "items": [caption_view(r) for r in rows[offset : offset + limit]]}

    def caption(self, instance_id: str, character: str) -> dict[str, Any] | None:
        from animlora.records.caption import get_caption

        with self.catalog() as catalog:
            row = get_caption(catalog, instance_id, character)
        return None if row is None else caption_view(row)

    def edit_caption(self, instance_id: str, character: str, text: str) -> dict[str, Any] | None:
        """None when there is no such caption (a new one is not created from the page)."""
        from animlora.records.caption import store_edit

        with self._writing(None, bump=False):
            if self.caption(instance_id, character) is None:
                return None
            with self.catalog() as catalog:
                store_edit(catalog, instance_id, character, text)
            return self.caption(instance_id, character)

    def accept_caption(self, instance_id: str, character: str) -> dict[str, Any] | None:
        from animlora.records.caption import accept_caption

        with self._writing(None, bump=False):
            if self.caption(instance_id, character) is None:
                return None
            with self.catalog() as catalog:
                accept_caption(catalog, instance_id, character)
            return self.caption(instance_id, character)

    def revert_caption(self, instance_id: str, character: str) -> dict[str, Any] | None:
        from animlora.records.caption import revert_edit

        with self._writing(None, bump=False):
            if self.caption(instance_id, character) is None:
                return None
            with self.catalog() as catalog:
                revert_edit(catalog, instance_id, character)
            return self.caption(instance_id, character)

    # -- export -----------------------------------------------------------------------
    def export(self, output_dir: Path, force: bool = False, version: str | None = None) -> dict[str, Any]:
        with self.lock:
            self._current()
            if version is not None and version != self.version:
                raise StaleStateError(STALE)
            return export_state(self.state, self.workspace, self.instance_path, output_dir, force)


def caption_view(row: Caption) -> dict[str, Any]:
    """A caption row as the page needs it (the fields and their measurements stay out)."""
    return {
        "instance_id": row.instance_id, "character": row.character, "text": row.text,
        "auto_text": row.auto_text, "source": row.source, "edited": row.edited,
        "accepted": row.accepted, "confidence": row.confidence,
    }


def _previous_export(out: Path) -> set[str] | None:
    """The files an earlier export wrote into ``out`` (relative paths), or None when ``out``
    holds no export. Reports before the file list: the files of its character folders."""
    marker = out / EXPORT_MARKER
    if not marker.is_file():
        return None
    try:
        report = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    if isinstance(report.get("files"), list):
        return {str(f) for f in report["files"]}
    folders = [f for f in [*report.get("characters", {}), "noise"] if _plain(f)]
    return {str(p.relative_to(out)) for f in folders for p in (out / f).rglob("*") if p.is_file()}


def _plain(rel: str) -> bool:
    """A relative path that stays where it is joined (no '..', not absolute)."""
    path = Path(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts


def export_state(state: ReviewState, workspace: Workspace, locate, output_dir: Path, force: bool) -> dict[str, Any]:
    """Write ``<output>/<character>/`` (and ``noise/``) with the reviewed membership.

    Nothing animlora did not write is ever deleted or overwritten: an earlier export (it has
    export_report.json, listing its files) is replaced file by file; another non-empty
    folder needs ``force``, and then the export is added beside what is there, refused
    before anything is written if one of its files would replace one of the user's."""
    out = output_dir.resolve()
    if out.is_file():
        raise BadInputError(out, "the output must be a folder")
    previous = _previous_export(out) if out.is_dir() else None
    if out.is_dir() and previous is None and any(out.iterdir()) and not force:
        raise WorkspaceError(f"{out}: not empty and not an earlier export; choose another folder or pass --force "
                             "(which adds the export and deletes nothing)")
    ours = previous or set()
    tmp = out / ".tmp-export"
    if tmp.is_dir():
        shutil.rmtree(tmp)  # our own leftover from a killed export
    counts: dict[str, int] = {}
    missing = []
    files: list[str] = []
    for inst, gid in sorted(state.assign.items()):
        group = state.groups[gid]
        folder = "noise" if group.is_noise else group.name
        if not group.is_noise and check_name_problem(folder):
            raise ReviewError(f"cluster {gid}: {check_name_problem(folder)}; rename it first")
        src = locate(inst)
        if src is None:
            missing.append(inst)
            continue
        rel = f"{folder}/{src.stem}{src.suffix.lower()}"
        if (tmp / rel).exists():
            rel = f"{folder}/{src.stem}_{inst[:8]}{src.suffix.lower()}"
        with atomic_path(inside(tmp, rel)) as part:
            shutil.copyfile(src, part)
        files.append(rel)
        counts[folder] = counts.get(folder, 0) + 1
    clash = next((rel for rel in files if (out / rel).exists() and rel not in ours), None)
    if clash is not None:
        shutil.rmtree(tmp)
        raise WorkspaceError(f"{out / clash}: exists and animlora did not write it; choose another folder")
    report = {
        "workspace": str(workspace.root),
        "characters": {k: v for k, v in sorted(counts.items()) if k != "noise"},
        "noise": counts.get("noise", 0),
        "missing": missing,
        "files": files,
    }
    for rel in sorted(ours):  # the earlier export's files, and only those
        old = out / rel
        if _plain(rel) and old.is_file() and not old.is_symlink() and old.resolve().is_relative_to(out):
            old.unlink()
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)
    atomic_write_json(out / EXPORT_MARKER, report)
    shutil.rmtree(tmp)
    for folder in {rel.split("/")[0] for rel in ours if _plain(rel)}:  # folders the earlier export left empty
        path = out / folder
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    return {"output": str(out), **{k: v for k, v in report.items() if k != "files"}}
