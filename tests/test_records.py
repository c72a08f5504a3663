"""Records: the deocclude stage's table, made by a named migration that moves the records
older catalogs kept in ``meta``; a project made by the last release re-runs with nothing
redone; the runner's records read back for ``status``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from animlora.catalog import MIGRATIONS, Catalog
from animlora.cli.stages import run_standalone
from animlora.io.images import write_image
from animlora.records import deocclude as records
from animlora.records.runs import count_done, done_items, failed_items, stage_run
from segment_synth import scene

MIGRATION = records.MIGRATION[0]


def make_old(path: Path, meta: dict[str, str]) -> None:
    """Turn a catalog into one made before the deocclude table: the records as JSON in meta."""
    with Catalog(path) as cat:
        for key, value in meta.items():
            cat.set_meta(key, value)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE deocclude_fills")
    conn.execute("DELETE FROM schema_migrations WHERE name = ?", (MIGRATION,))
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) - 1}")
    conn.commit()
    conn.close()


def test_the_migration_moves_the_meta_records_into_the_table_and_loses_nothing(tmp_path):
    path = tmp_path / "catalog.sqlite"
    v2 = [{"instance_id": "f1_i0", "occluded_fraction": 0.12, "path": "a_i0.jpg", "original": "a_i0_original.jpg",
           "box": [1, 2, 30, 40], "backend": "sd", "character": "luca", "prompt": "luca, a boy"},
          {"instance_id": "f1_i1", "occluded_fraction": 0.3, "path": "a_i1.jpg", "original": "a_i1_original.jpg",
           "box": [5, 6, 7, 8], "backend": "lama", "character": None}]
    v1 = [{"instance_id": "f3_i0", "occluded_fraction": 0.2, "path": "c_i0.jpg", "original": "c_i0_original.jpg",
           "backend": "opencv", "character": None}]
    make_old(path, {"deocclude:f1": json.dumps(v2), "deocclude:f2": "[]", "deocclude:f3": json.dumps(v1),
                    "deocclude:bad": "{not json", "deocclude.fallback": "used opencv", "extract.stats.v": "{}"})
    with Catalog(path) as cat:
        assert cat.schema_version == len(MIGRATIONS)
        fills = records.all_fills(cat)
        assert [f.as_report_entry() for f in fills if f.frame_id == "f1"] == v2  # the report's entries, as they were
        (old,) = [f for f in fills if f.frame_id == "f3"]
        assert old.box is None and old.backend == "opencv"
        assert {r["key"] for r in cat.rows("SELECT key FROM meta")} == {
            "deocclude:bad", "deocclude.fallback", "extract.stats.v"}  # malformed: kept where it was
        assert set(records.fills_by_instance(cat)) == {"f1_i0", "f1_i1", "f3_i0"}
        records.replace_frame(cat, "f1", [fills[0]])
        assert [f.instance_id for f in records.all_fills(cat)] == ["f1_i0", "f3_i0"]
    with Catalog(path) as cat:  # applied once: reopening changes nothing
        assert len(records.all_fills(cat)) == 2


def test_a_deocclude_output_made_by_the_last_release_migrates_and_is_up_to_date(tmp_path):
    image, _ = scene(4, [((120, 90), (50, 70), (220, 90, 60)), ((168, 150), (12, 12), (60, 80, 210))])
    write_image(tmp_path / "frames" / "two.png", image)
    common = {"sets": None, "config_files": None, "profile": None, "force": False, "as_json": False}
    run_standalone("segment", tmp_path / "frames", tmp_path / "seg", {"segment.backend": "classic"}, **common)
    out = tmp_path / "deocc"
    run_standalone("deocclude", tmp_path / "seg", out, {"inpaint.backend": "opencv"}, **common)
    report = json.loads((out / "deocclude_report.json").read_text())
    assert report["instances_changed"] == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    catalog = out / ".animlora" / "catalog.sqlite"
    # what the last release left: the same records as JSON in meta, no table, no migration record
    with Catalog(catalog) as cat:
        by_frame: dict[str, list] = {}
        for fill in records.all_fills(cat):
            by_frame.setdefault(fill.frame_id, []).append(fill.as_report_entry())
    conn = sqlite3.connect(catalog)
    conn.execute("DELETE FROM deocclude_fills")
    conn.commit()
    conn.close()
    make_old(catalog, {f"deocclude:{frame}": json.dumps(entries) for frame, entries in by_frame.items()})

    run_standalone("deocclude", tmp_path / "seg", out, {"inpaint.backend": "opencv"}, **common)
    with Catalog(catalog) as cat:
        run = stage_run(cat, "deocclude")
        assert run is not None and run.status == "done" and count_done(cat, "deocclude") == 1
        assert failed_items(cat, "deocclude") == [] and len(done_items(cat, "deocclude")) == 1
        assert [f.as_report_entry() for f in records.all_fills(cat)] == report["changed"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jpg")} == stamps  # nothing redone
    # and a forced re-run writes the same report from the table
    run_standalone("deocclude", tmp_path / "seg", out, {"inpaint.backend": "opencv"}, **common | {"force": True})
    assert json.loads((out / "deocclude_report.json").read_text())["changed"] == report["changed"]


def test_identity_distances_comes_from_a_migration_and_an_old_catalog_keeps_its_rows(tmp_path):
    from animlora.records import cluster as cluster_records

    # the CREATE the cluster stage of the last release ran itself
    old_release_sql = """CREATE TABLE IF NOT EXISTS identity_distances (
        instance_id TEXT PRIMARY KEY, track_id TEXT, track_outlier INTEGER NOT NULL, to_track REAL,
        cluster_id TEXT NOT NULL, to_cluster REAL, nearest_other TEXT, to_other REAL)"""

    name = cluster_records.MIGRATION[0]
    new = tmp_path / "new.sqlite"
    with Catalog(new) as cat:  # a new catalog has the table before any cluster run
        made = [tuple(r) for r in cat.rows("PRAGMA table_info(identity_distances)")]
    # an old catalog: the table made by the cluster stage of the last release, with a row
    old = tmp_path / "old.sqlite"
    Catalog(old).close()
    conn = sqlite3.connect(old)
    conn.execute("DROP TABLE identity_distances")
    conn.execute("DELETE FROM schema_migrations WHERE name = ?", (name,))
    conn.execute(old_release_sql)
    conn.execute("INSERT INTO identity_distances VALUES ('i1', 't1', 0, 0.1, 'c1', 0.2, 'c2', 0.6)")
    conn.commit()
    conn.close()
    with Catalog(old) as cat:
        assert cat.one("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) is not None
        assert [tuple(r) for r in cat.rows("SELECT * FROM identity_distances")] == [
            ("i1", "t1", 0, 0.1, "c1", 0.2, "c2", 0.6)]
        assert [tuple(r) for r in cat.rows("PRAGMA table_info(identity_distances)")] == made
        assert cat.one("SELECT COUNT(*) FROM identity_distances")[0] == 1


def one_frame_project(root: Path, inpaint: str = "") -> None:
    """A project of one extracted frame with two shapes (classic segmenter, opencv inpaint)."""
    from animlora.workspace import Workspace

    (root / "frames").mkdir(parents=True)
    (root / "project.yaml").write_text("project:\n  name: t\nsegment:\n  backend: classic\n"
                                       "inpaint:\n  backend: opencv\n" + inpaint)
    with Workspace(root).open_catalog() as cat:
        cat.upsert("videos", [{"id": "v1", "path": "v.mp4", "name": "v", "size": 1, "status": "ok"}])
        cat.upsert("shots", [{"id": "v1_s0", "video_id": "v1", "idx": 0, "start_frame": 0, "end_frame": 10,
                              "start_time": 0, "end_time": 1, "frame_count": 10}])
        cat.upsert("frames", [{"id": "v1_f2", "video_id": "v1", "shot_id": "v1_s0", "frame_index": 2,
                               "timestamp": 0.2, "path": "f2.png", "kept": 1}])
    image, _ = scene(4, [((120, 90), (50, 70), (220, 90, 60)), ((168, 150), (12, 12), (60, 80, 210))])
    write_image(root / "frames" / "f2.png", image)


def test_stage_folders_new_names_and_an_old_layout_project_resumes_with_nothing_redone(tmp_path):
    """A new project writes inpaint/deocclude into inpainting/ and deocclusion/; a project
    made by an earlier release (plates/, deoccluded/) keeps its folders and is up to date."""
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.records.folders import stage_folder
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    root = tmp_path / "proj"
    one_frame_project(root, "  plates: always\n")
    ws = Workspace(root)
    stages = ["segment", "inpaint", "deocclude"]

    def run(force: bool = False) -> list:
        return Runner(ws, load_settings(root), force=force).run([get_stage(s) for s in stages])

    run()
    assert (stage_folder("inpaint", root), stage_folder("deocclude", root)) == ("inpainting", "deocclusion")
    made = {d: sorted(p.name for p in (root / d).iterdir()) for d in ("inpainting", "deocclusion")}
    assert "inpaint_report.json" in made["inpainting"] and "deocclude_report.json" in made["deocclusion"]
    assert "v1_f2.png" in made["inpainting"]  # the frame's plate
    assert len([n for n in made["deocclusion"] if n.endswith("_original.jpg")]) == 2
    assert not (root / "plates").exists() and not (root / "deoccluded").exists()

    # the same project as the last release left it: the folders under their earlier names
    (root / "inpainting").rename(root / "plates")
    (root / "deocclusion").rename(root / "deoccluded")
    stamps = {p: p.stat().st_mtime_ns for d in ("plates", "deoccluded") for p in (root / d).iterdir()}
    summaries = run()
    assert [s.up_to_date for s in summaries] == [True, True, True]
    assert {p: p.stat().st_mtime_ns for d in ("plates", "deoccluded") for p in (root / d).iterdir()} == stamps
    assert not (root / "inpainting").exists() and not (root / "deocclusion").exists()
    assert ws.stage_path("deocclude") == root / "deoccluded"
    # a forced re-run writes into the old folders too, the same files
    run(force=True)
    assert {d: sorted(p.name for p in (root / d).iterdir()) for d in ("plates", "deoccluded")} == {
        "plates": made["inpainting"], "deoccluded": made["deocclusion"]}
    assert not (root / "inpainting").exists() and not (root / "deocclusion").exists()


def test_inpaint_makes_plates_only_when_a_dataset_reads_them(tmp_path):
    """inpaint.plates auto (default): a character dataset reads no plate, so none is made and
    the summary says why; dataset.kind all, or inpaint.plates always, makes them. The
    setting never enters the stage key: switching it redoes no finished work."""
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage
    from animlora.workspace import Workspace

    root = tmp_path / "proj"
    one_frame_project(root)
    ws = Workspace(root)

    def run(**overrides) -> list:
        loaded = load_settings(root, overrides={k: dict(v) for k, v in overrides.items()})
        return Runner(ws, loaded).run([get_stage(s) for s in ("segment", "inpaint")])

    skipped = run()[1]
    assert (skipped.items_total, skipped.note is not None) == (0, True)
    assert "dataset.kind character" in skipped.note
    assert not list((root / "inpainting").glob("*.png"))
    made = run(dataset={"kind": "all"})[1]
    assert (made.items_total, made.items_done, made.note) == (1, 1, None)
    plate = root / "inpainting" / "v1_f2.png"
    stamp = plate.stat().st_mtime_ns
    again = run(dataset={"kind": "all"}, inpaint={"plates": "always"})[1]
    assert again.up_to_date and plate.stat().st_mtime_ns == stamp


def test_one_reader_of_a_projects_instances_serves_identity_and_the_dataset(tmp_path):
    """identity's kept instances and the dataset's reviewed members come from one reader
    (records.segment.project_instances) and agree on each instance's lineage."""
    from animlora.curation.sources import project_members
    from animlora.identity.inputs import from_project
    from animlora.records import prefilter, segment

    for folder, name in (("frames", "v_f1.png"), ("segmentation", "a.png"), ("filtered", "a.png"),
                         ("filtered", "b.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(name.encode() + folder.encode())
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        cat.upsert("videos", [{"id": "v", "path": "/v.mp4", "name": "film", "size": 1, "status": "ok"}])
        cat.upsert("shots", [{"id": "v_s0", "video_id": "v", "idx": 0, "start_frame": 0, "end_frame": 2,
                              "start_time": 0.0, "end_time": 1.0, "frame_count": 2}])
        cat.upsert("frames", [{"id": "v_f1", "video_id": "v", "shot_id": "v_s0", "frame_index": 1, "timestamp": 0.5,
                               "path": "v_f1.png", "width": 64, "height": 48, "kept": 1}])
        row = {"frame_id": "v_f1", "video_id": "v", "shot_id": "v_s0", "mask_path": "m.png", "bbox": "[1.4, 2, 30, 40]",
               "area_fraction": 0.1, "truncated": 0, "sharpness": 0.5, "score": 1.0, "backend": "classic"}
        cat.upsert("instances", [row | {"id": "a", "track_id": "v_s0_t0", "path": "a.png"},
                                 row | {"id": "b", "track_id": "v_s0_t1", "path": "b.png"},
                                 row | {"id": "c", "track_id": None, "path": "c.png"}])
        cat.upsert("prefilter_results", [{"instance_id": "a", "kept": 1, "reason": None, "path": "a.png"},
                                         {"instance_id": "b", "kept": 1, "reason": None, "path": "b.png"},
                                         {"instance_id": "c", "kept": 0, "reason": "tiny", "path": None}])
        cat.upsert("character_members", [{"instance_id": "a", "character": "buck"},
                                         {"instance_id": "c", "character": "buck"}])
        instances = segment.project_instances(cat)
        kept = from_project(cat, tmp_path)
        members = project_members(cat, tmp_path)
        assert prefilter.rejected_counts(cat) == {"tiny": 1}
    assert list(instances) == ["a", "b", "c"] and instances["a"].video_name == "film"
    assert [(r.instance_id, r.track_id, r.shot_id, r.video_id) for r in kept] == [
        ("a", "v_s0_t0", "v_s0", "v"), ("b", "v_s0_t1", "v_s0", "v")]
    assert kept[0].path == (tmp_path / "filtered" / "a.png").resolve()
    (a,) = members  # c: rejected by the prefilter; b: in no character
    assert (a.instance_id, a.track_id, a.shot_id, a.video_id, a.video_name, a.frame_index, a.timestamp) == (
        "a", "v_s0_t0", "v_s0", "v", "film", 1, 0.5)
    assert a.bbox == (1, 2, 30, 40) and a.frame_size == (64, 48) and a.problem == ""
    assert a.image_path == str(tmp_path / "filtered" / "a.png") and a.frame_path == str(tmp_path / "frames" / "v_f1.png")
