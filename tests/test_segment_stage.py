"""The segment stage: output contract, catalog rows, bad images, fallback, project mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animlora.cli.stages import run_standalone
from animlora.io.images import read_image, write_image
from animlora.workspace import Workspace
from segment_synth import scene

RED, BLUE, PURPLE = (220, 90, 60), (60, 80, 210), (200, 60, 200)


def make_input(root: Path) -> Path:
    for i in range(3):
        image, _ = scene(i, [((80 + 10 * i, 100), (30, 45), RED), ((230 - 5 * i, 95), (35, 40), BLUE)])
        write_image(root / "shotA" / f"f{i}.png", image)
    image, _ = scene(9, [((160, 90), (40, 60), PURPLE)])
    write_image(root / "single.png", image)
    return root


def segment(inp: Path, out: Path, flags: dict | None = None, sets: list[str] | None = None) -> None:
    run_standalone("segment", inp, out, {"segment.backend": "classic", **(flags or {})},
                   sets=sets, config_files=None, profile=None, force=False, as_json=False)


def rows(out: Path, sql: str) -> list[dict]:
    catalog = Workspace.for_output(out).open_catalog()
    try:
        return [dict(r) for r in catalog.rows(sql)]
    finally:
        catalog.close()


def test_standalone_segment_writes_the_output_contract_and_catalog(tmp_path):
    inp, out = make_input(tmp_path / "in"), tmp_path / "out"
    segment(inp, out)

    names = ["shotA__f0_i0", "shotA__f0_i1", "shotA__f1_i0", "shotA__f1_i1", "shotA__f2_i0", "shotA__f2_i1", "single_i0"]
    assert sorted(p.stem for p in (out / "character").iterdir()) == names
    assert sorted(p.stem for p in (out / "masks").iterdir()) == names
    assert not (out / "variants").exists()  # context variants: only on request (nothing reads them)
    assert sorted(p.stem for p in (out / "background").iterdir()) == ["shotA__f0", "shotA__f1", "shotA__f2", "single"]

    cut = read_image(out / "character" / "shotA__f0_i0.png", "RGBA")
    alpha = cut[..., 3]
    assert alpha[0, 0] == 0 and alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] == 255
    assert ((alpha > 0) & (alpha < 255)).any()  # soft edges kept
    background = read_image(out / "background" / "shotA__f0.png", "RGBA")
    assert background[100, 80, 3] == 0 and background[5, 5, 3] == 255

    instances = rows(out, "SELECT * FROM instances ORDER BY id")
    assert len(instances) == 7
    shot_a = sorted((r["path"], r["track_id"]) for r in instances if r["shot_id"] == "shot_shotA")
    assert [t for _, t in shot_a] == ["shot_shotA_t0", "shot_shotA_t1"] * 3
    for r in instances:
        assert 0.02 < r["area_fraction"] < 0.2
        assert r["truncated"] == 0 and r["backend"] == "classic" and r["sharpness"] > 0
        assert len(json.loads(r["bbox"])) == 4
    tracks = rows(out, "SELECT id, n_instances FROM tracks ORDER BY id")
    assert tracks == [
        {"id": "shot_shotA_t0", "n_instances": 3}, {"id": "shot_shotA_t1", "n_instances": 3},
        {"id": "shot_single.png_t0", "n_instances": 1},
    ]
    report = json.loads((out / "segmentation_results.json").read_text())
    assert report["counts"] == {"shots": 2, "frames": 4, "frames_skipped": 0, "instances": 7, "tracks": 3}
    assert report["backends_used"] == {"classic": 4} and report["fallback"] == []
    assert report["engine"] == "classic"
    assert len(report["instances"]) == 7

    # same settings again: nothing redone
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    segment(inp, out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_context_variants_are_written_only_on_request(tmp_path):
    inp = tmp_path / "in"
    image, _ = scene(9, [((160, 90), (40, 60), PURPLE)])
    write_image(inp / "single.png", image)
    segment(inp, tmp_path / "plain")
    assert not (tmp_path / "plain" / "variants").exists()
    segment(inp, tmp_path / "asked", sets=["segment.context_variants=[original,blurred]"])
    for kind in ("original", "blurred"):
        assert [p.name for p in (tmp_path / "asked" / "variants" / kind).iterdir()] == ["single_i0.jpg"]
    crop = read_image(tmp_path / "asked" / "variants" / "original" / "single_i0.jpg", "RGB")
    cut = read_image(tmp_path / "asked" / "character" / "single_i0.png", "RGBA")
    assert crop.shape[:2] == cut.shape[:2]  # the same box as the cut-out


def test_bad_images_are_skipped_or_converted_and_reported(tmp_path):
    from PIL import Image

    inp, out = make_input(tmp_path / "in"), tmp_path / "out"
    (inp / "zero.png").write_bytes(b"")
    good = (inp / "single.png").read_bytes()
    (inp / "truncated.png").write_bytes(good[: len(good) // 2])
    (inp / "dup.png").write_bytes(good)  # the same bytes twice: two frames, two instances
    image, _ = scene(3, [((160, 90), (40, 60), PURPLE)])
    Image.fromarray(image).convert("CMYK").save(inp / "cmyk.jpg", quality=95)
    Image.fromarray(image[..., 0].astype(np.uint16) * 257).save(inp / "deep16.png")
    Image.fromarray(image).convert("L").save(inp / "gray.png")

    segment(inp, out)  # never a crash

    report = json.loads((out / "segmentation_results.json").read_text())
    skipped = {Path(s["source"]).name: s["problem"] for s in report["skipped"]}
    assert set(skipped) == {"zero.png", "truncated.png"}
    assert "empty" in skipped["zero.png"] and "truncated" in skipped["truncated.png"]
    converted = {Path(c["source"]).name: c["from"] for c in report["converted"]}
    assert converted == {"cmyk.jpg": "CMYK", "deep16.png": "I;16", "gray.png": "L"}
    assert report["counts"]["frames_skipped"] == 2
    frames = rows(out, "SELECT source, status FROM segment_frames")
    assert sum(r["status"] == "ok" for r in frames) == 8
    assert (out / "character" / "dup_i0.png").is_file() and (out / "character" / "single_i0.png").is_file()
    assert len(rows(out, "SELECT id FROM instances")) == report["counts"]["instances"] >= 9
    # the converted CMYK frame was segmented like any other
    assert (out / "character" / "cmyk_i0.png").is_file()


def test_missing_isnet_weights_fall_back_to_classic_and_say_so(tmp_path, monkeypatch):
    from animlora.errors import ModelNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    inp, out = make_input(tmp_path / "in"), tmp_path / "out"
    store = ["models.store=" + str(tmp_path / "empty-store")]
    segment(inp, out, {"segment.backend": "isnet"}, sets=store)
    report = json.loads((out / "segmentation_results.json").read_text())
    assert report["backends_used"] == {"classic": 4}
    assert len(report["fallback"]) == 1 and "used 'classic'" in report["fallback"][0]
    assert "animlora models pull isnet" in report["fallback"][0] and "segment.fallback is auto" in report["fallback"][0]

    with pytest.raises(ModelNotFoundError, match="isnet"):
        segment(inp, tmp_path / "out2", {"segment.backend": "isnet", "segment.fallback": False}, sets=store)
    assert not (tmp_path / "out2" / "character").exists()


def test_project_mode_reads_kept_frames_by_shot_from_the_catalog(tmp_path):
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import get_stage

    root = tmp_path / "proj"
    (root / "frames").mkdir(parents=True)
    (root / "project.yaml").write_text("project:\n  name: t\nsegment:\n  backend: classic\n")
    ws = Workspace(root)
    cat = ws.open_catalog()
    cat.upsert("videos", [{"id": "v1", "path": "v.mp4", "name": "v", "size": 1, "status": "ok"}])
    cat.upsert("shots", [
        {"id": f"v1_s{k}", "video_id": "v1", "idx": k, "start_frame": 10 * k, "end_frame": 10 * k + 10,
         "start_time": k, "end_time": k + 1, "frame_count": 10} for k in range(2)
    ])
    frames = []
    for k, (shot, fi, kept) in enumerate([(0, 2, 1), (0, 5, 1), (1, 12, 1), (1, 15, 0)]):
        image, _ = scene(k, [((100 + 5 * k, 90), (35, 50), RED)])
        name = f"v1_s{shot}_{fi:06d}.png"
        write_image(root / "frames" / name, image)
        frames.append({"id": f"v1_f{fi}", "video_id": "v1", "shot_id": f"v1_s{shot}", "frame_index": fi,
                       "timestamp": fi / 10, "path": name, "kept": kept})
    cat.upsert("frames", frames)

    # the progress panel names the video, the shot and its time, never the content id
    from types import SimpleNamespace

    plan = get_stage("segment")._plan_project(SimpleNamespace(workspace=ws, catalog=cat))
    assert [(item.key, item.label) for item in plan] == [("v1_s0", "v shot 0 (00:00)"), ("v1_s1", "v shot 1 (00:01)")]
    # the stages whose items are shots or frames (inpaint, deocclude, enhance) name them alike
    from animlora.records.extract import place_labels

    labels = place_labels(cat)
    assert labels["v1_s1"] == "v shot 1 (00:01)" and labels["v1_f12"] == "v shot 1 at 00:01"
    assert labels["v1_f5"] == "v shot 0 at 00:00"
    cat.close()

    loaded = load_settings(root)
    Runner(ws, loaded).run([get_stage("segment")])

    cat = ws.open_catalog()
    got = [(r["frame_id"], r["shot_id"], r["track_id"], r["video_id"]) for r in cat.rows("SELECT * FROM instances ORDER BY frame_id")]
    cat.close()
    assert sorted(got) == [
        ("v1_f12", "v1_s1", "v1_s1_t0", "v1"),
        ("v1_f2", "v1_s0", "v1_s0_t0", "v1"),
        ("v1_f5", "v1_s0", "v1_s0_t0", "v1"),
    ]
    assert (root / "segmentation" / "character" / "v1_s0_000002_i0.png").is_file()
    assert (root / "segmentation" / "segmentation_results.json").is_file()
    summary = Runner(ws, loaded).run([get_stage("segment")])[0]
    assert summary.up_to_date

    # the project moved elsewhere: segment is up to date under the same stage key (its
    # fingerprints hold no absolute path)
    import shutil

    from animlora.pipeline.stage import digest

    def stage_key(cat):
        return cat.one("SELECT stage_key FROM stage_runs WHERE stage = 'segment'")[0]

    with ws.open_catalog() as cat:
        key = stage_key(cat)
    moved = tmp_path / "elsewhere" / "proj"
    moved.parent.mkdir()
    shutil.move(root, moved)
    ws = Workspace(moved)
    assert Runner(ws, load_settings(moved)).run([get_stage("segment")])[0].up_to_date
    with ws.open_catalog() as cat:
        assert stage_key(cat) == key
        # a shot finished by an earlier release (absolute frame paths in its fingerprint) keeps it
        old = digest([(f, str(moved / "frames" / n)) for f, n in (("v1_f2", "v1_s0_000002.png"),
                                                                  ("v1_f5", "v1_s0_000005.png"))])
        cat.execute("UPDATE stage_items SET fingerprint = ? WHERE stage = 'segment' AND item_key = 'v1_s0'", (old,))
        plan = get_stage("segment")._plan_project(SimpleNamespace(workspace=ws, catalog=cat))
        assert plan[0].key == "v1_s0" and plan[0].earlier == old and plan[1].earlier != old
    summary = Runner(ws, load_settings(moved)).run([get_stage("segment")])[0]
    assert summary.items_skipped == summary.items_total == 2  # nothing redone
    assert Runner(ws, load_settings(moved)).run([get_stage("segment")])[0].up_to_date
    with ws.open_catalog() as cat:  # the runner kept the recorded fingerprint
        assert cat.one("SELECT fingerprint FROM stage_items WHERE stage = 'segment' AND item_key = 'v1_s0'")[0] == old
        # the frames read are stored inside the project, relative to it, and read back where they are now
        assert {r[0] for r in cat.rows("SELECT source FROM segment_frames")} == {
            "frames/v1_s0_000002.png", "frames/v1_s0_000005.png", "frames/v1_s1_000012.png"}
        from animlora.records.segment import segment_frames

        assert {f.source for f in segment_frames(cat, moved)} == {
            str(moved / "frames" / n) for n in ("v1_s0_000002.png", "v1_s0_000005.png", "v1_s1_000012.png")}


def test_sam2_without_weights_falls_back_to_isnet_before_classic(tmp_path, monkeypatch):
    from test_segment_backends import tiny_isnet

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    model = tiny_isnet(tmp_path / "tiny.onnx", size=128)
    inp, out = make_input(tmp_path / "in"), tmp_path / "out"
    sets = ["models.store=" + str(tmp_path / "empty-store"), f"models.paths.isnet={model}", "segment.isnet_size=0"]
    segment(inp, out, {"segment.backend": "sam2"}, sets=sets)
    report = json.loads((out / "segmentation_results.json").read_text())
    assert report["backends_used"] == {"isnet": 4}
    assert report["engine"].startswith("isnet on ") and report["engine"].endswith("128x128")
    assert "backend 'sam2' unavailable" in report["fallback"][0] and "used 'isnet'" in report["fallback"][0]


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_the_report_names_the_engine_under_every_executor(tmp_path, executor):
    inp, out = make_input(tmp_path / "in"), tmp_path / "out"
    segment(inp, out, sets=[f"runner.executor={executor}", "runner.workers=2"])
    report = json.loads((out / "segmentation_results.json").read_text())
    assert report["engine"] and report["engine"].startswith("classic")
    assert report["backends_used"] == {"classic": 4}


def test_shot_labels_read_as_video_shot_and_time():
    from animlora.records.extract import shot_label as _shot_label

    row = {"video_name": "bbb_film", "video_id": "a04a6b75e4eb52ab", "shot_idx": 54, "shot_start": 192.4,
           "timestamp": 193.0}
    assert _shot_label(row, "a04a6b75e4eb52ab_s54") == "bbb_film shot 54 (03:12)"
    assert _shot_label({**row, "shot_start": 3725.0}, "x") == "bbb_film shot 54 (1:02:05)"
    no_shot = {**row, "shot_idx": None, "shot_start": None}
    assert _shot_label(no_shot, "a04a6b75e4eb52ab_frame_f1") == "bbb_film frame at 03:13"


def test_shots_segmented_ahead_on_a_thread_give_the_same_outputs(tmp_path, monkeypatch):
    """Serial runs segment the next shot on a thread while this one is written (_Ahead):
    the same rows and files as one shot after another."""
    import threading

    from animlora.stages.segment import SegmentStage

    inp = make_input(tmp_path / "in")
    image, _ = scene(4, [((120, 110), (40, 50), BLUE)])
    write_image(inp / "shotB" / "g0.png", image)
    read = SegmentStage._read_and_segment
    threads: list[str] = []

    def spy(self, job, item, cancel):
        threads.append(threading.current_thread().name)
        return read(self, job, item, cancel)

    monkeypatch.setattr(SegmentStage, "_read_and_segment", spy)
    segment(inp, tmp_path / "ahead")
    assert len(threads) == 3 and sum(name.startswith("segment-ahead") for name in threads) == 2

    plan_ahead = SegmentStage._plan_ahead

    def no_ahead(self, ctx, items):
        plan_ahead(self, ctx, items)
        self._next = {}

    monkeypatch.setattr(SegmentStage, "_plan_ahead", no_ahead)
    threads.clear()
    segment(inp, tmp_path / "plain")
    assert not any(name.startswith("segment-ahead") for name in threads)
    query = "SELECT id, frame_id, track_id, bbox, area_fraction, sharpness, measures FROM instances ORDER BY id"
    assert rows(tmp_path / "ahead", query) == rows(tmp_path / "plain", query)
    files = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.png"))
    assert files and files == sorted(p.relative_to(tmp_path / "ahead") for p in (tmp_path / "ahead").rglob("*.png"))
    for rel in files:
        assert (tmp_path / "plain" / rel).read_bytes() == (tmp_path / "ahead" / rel).read_bytes()
