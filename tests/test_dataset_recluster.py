"""A finished project re-clustered: characters renumbered, one gone, one shrunk under min_size.

Guards the once-seen, never-reproduced failure "training_data/character_7/images/...png: No such
file or directory" on a re-run from embed of a copied film project (docs/reliability.md,
"Re-clustering a finished project"): the dataset stage re-runs with the serial and the process
executor, nothing fails, and every folder holds exactly what its metadata lists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from animlora.catalog import Catalog
from dataset_synth import make_project, run_stages

SETTINGS = {"dataset": {"target_size": 6, "min_size": 5, "small_size": 5, "resolution": 256, "min_bucket": 128,
                        "max_bucket": 512, "kohya_layout": True, "report": False}}
TOP = {"dataset_results.json", "dataset_all.toml"}  # written by finish at the stage folder's top


def _relabel(root: Path, names: dict[str, str | None], shrink: tuple[str, int] | None = None) -> None:
    """Rename clusters as a new clustering would (old name -> new name; None: the cluster is gone
    into noise); ``shrink``: (new name, members kept) leaves a cluster under min_size."""
    with Catalog(root / "catalog.sqlite") as cat:
        rows = cat.rows("SELECT instance_id, character FROM character_members ORDER BY instance_id")
        cat.execute("DELETE FROM character_members")
        kept: dict[str, int] = {}
        for row in rows:
            new = names.get(row["character"], row["character"])
            if new is None:
                continue
            kept[new] = kept.get(new, 0) + 1
            if shrink and new == shrink[0] and kept[new] > shrink[1]:
                continue
            cat.upsert("character_members", [{"instance_id": row["instance_id"], "character": new}])


def _check(root: Path, summaries: list, expect_built: set[str], expect_skipped: set[str]) -> None:
    for summary in summaries:
        assert not summary.failures, summary.failures
    out = root / "training_data"
    with Catalog(root / "catalog.sqlite") as cat:
        rows = cat.rows("SELECT item_key, status, outputs FROM stage_items WHERE stage = 'dataset'")
    assert {r["status"] for r in rows} == {"done"}
    recorded = {f for r in rows for f in json.loads(r["outputs"])}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    kohya_all = {f for f in on_disk if f.startswith("kohya_all/")}
    # every file is a recorded output of a current item, or one of finish's
    assert on_disk - kohya_all - TOP == recorded
    built = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/metadata.json")}
    assert set(built) == expect_built
    assert {p.stem for p in (out / ".skipped").glob("*.json")} == expect_skipped
    combined = len(expect_built) > 1  # dataset_all.toml and kohya_all/ only for two or more characters
    assert (out / "dataset_all.toml").is_file() == combined
    folders = expect_built | ({"kohya_all"} if combined else set()) | ({".skipped"} if expect_skipped else set())
    assert {p.name for p in out.iterdir() if p.is_dir()} == folders
    for name, meta in built.items():
        images = {r["file"] for r in meta["images"]}
        assert meta["count"] == len(images) >= SETTINGS["dataset"]["min_size"]
        assert {f"{name}/images/{p.name}" for p in (out / name / "images").glob("*.png")} == images
        assert {p.name for p in (out / name / "kohya").rglob("*.png")} == {Path(f).name for f in images}
        for f in images:  # the caption beside each image and in captions/
            assert (out / f).with_suffix(".txt").is_file()
            assert (out / name / "captions" / Path(f).with_suffix(".txt").name).is_file()
    if not combined:
        return
    # kohya_all (finish): one folder per built character, each image of the character's dataset
    want = {f"{Path(r['file']).name}" for meta in built.values() for r in meta["images"]}
    got = {p.name for p in (out / "kohya_all").rglob("*.png")}
    assert got == want
    assert len(list((out / "kohya_all").iterdir())) == len(built)


def test_recluster_renumbered_gone_and_shrunk_serial_and_process(tmp_path):
    root = tmp_path / "p"
    make_project(root, {"character_1": 8, "character_2": 7, "character_3": 7, "character_4": 6}, shots=4)
    _check(root, run_stages(root, ["caption", "dataset"], SETTINGS),
           {"character_1", "character_2", "character_3", "character_4"}, set())

    # 1. renumbered (1 <-> 2), character_4 gone into noise, character_3 shrunk under min_size; serial
    _relabel(root, {"character_1": "character_2", "character_2": "character_1", "character_4": None},
             shrink=("character_3", 3))
    _check(root, run_stages(root, ["dataset"], SETTINGS), {"character_1", "character_2"},
           {"character_3"})

    # 2. a copy of the project, renumbered again (the gone cluster back under a new number); process pool
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    _relabel(copy, {"character_1": "character_3", "character_2": "character_1", "character_3": None},
             shrink=("character_1", 2))
    with Catalog(copy / "catalog.sqlite") as cat:  # the noise comes back as character_2
        have = {r["instance_id"] for r in cat.rows("SELECT instance_id FROM character_members")}
        back = [r["id"] for r in cat.rows("SELECT id FROM instances ORDER BY id") if r["id"] not in have]
        cat.upsert("character_members", [{"instance_id": i, "character": "character_2"} for i in back])
    process = {**SETTINGS, "runner": {"executor": "process", "workers": 2}}
    _check(copy, run_stages(copy, ["dataset"], process), {"character_2", "character_3"}, {"character_1"})

    # 3. one character left: the combined set of two or more (dataset_all.toml, kohya_all/) goes
    _relabel(copy, {"character_2": None})
    _check(copy, run_stages(copy, ["dataset"], SETTINGS), {"character_3"}, {"character_1"})
