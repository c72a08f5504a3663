"""The instances identity works on: from the catalog in a project, from a folder standalone.

In a project the cut-outs are the prefilter stage's kept ones (``prefilter_results.kept = 1``,
files under ``filtered/``), or every instance of the segment stage when prefilter has not
run; lineage (frame, track, shot, video) comes from ``instances``. Standalone, every image
under the input folder is an instance whose id is its content hash, without lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animlora.catalog import Catalog
from animlora.errors import BadInputError
from animlora.io.files import file_sha256
from animlora.io.images import list_images
from animlora.records import embed, prefilter, segment
from animlora.records.folders import stage_folder


@dataclass(frozen=True)
class InstanceRef:
    instance_id: str
    content_hash: str
    path: Path  # absolute path of the RGBA cut-out
    frame_id: str | None = None
    track_id: str | None = None
    shot_id: str | None = None
    video_id: str | None = None


def from_folder(folder: Path) -> list[InstanceRef]:
    """Every image under ``folder``; duplicates (same bytes) count once."""
    if not folder.is_dir():
        raise BadInputError(folder, "expected a folder of RGBA PNG cut-outs")
    refs: dict[str, InstanceRef] = {}
    for path in list_images(folder):
        digest = file_sha256(path)
        refs.setdefault(digest, InstanceRef(digest, digest, path.resolve()))
    if not refs:
        raise BadInputError(folder, "no images in this folder (expected RGBA PNG cut-outs)")
    return sorted(refs.values(), key=lambda r: r.instance_id)


def from_project(catalog: Catalog, root: Path) -> list[InstanceRef]:
    """Kept instances of a project with their lineage (see module doc)."""
    verdicts = prefilter.verdicts(catalog)
    base = root / stage_folder("prefilter")
    refs = []
    for inst in segment.project_instances(catalog).values():
        verdict = verdicts.get(inst.id)
        if verdict is None or not verdict.kept or not verdict.path:
            continue
        path = (base / verdict.path).resolve()
        if not path.is_file():
            raise BadInputError(path, f"cut-out of instance {inst.id} is missing; re-run the upstream stage")
        refs.append(InstanceRef(inst.id, file_sha256(path), path, inst.frame_id, inst.track_id, inst.shot_id,
                                inst.video_id))
    return refs


def stored_path(path: Path, root: Path) -> str:
    """How a path is kept in the catalog: relative to the workspace when inside it."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def load_identity_instances(catalog: Catalog, root: Path) -> list[InstanceRef]:
    """The instances the last embed run saw (``identity_instances``), in id order."""
    refs = []
    for row in embed.identity_instances(catalog):
        p = Path(row.path)
        refs.append(InstanceRef(row.instance_id, row.content_hash, p if p.is_absolute() else root / p,
                                row.frame_id, row.track_id, row.shot_id, row.video_id))
    return refs
