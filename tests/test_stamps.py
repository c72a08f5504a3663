"""A project copied without its files' times (`cp -r`) gets them back (pipeline/stamps.py):
nothing is made again, and a file changed by hand is still seen as changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar

from animlora.catalog import Catalog
from animlora.config import load_settings
from animlora.curation.sources import stat_key
from animlora.pipeline.runner import Runner
from animlora.pipeline.stage import ItemOutput, StageContext, WorkItem, digest
from animlora.pipeline.stamps import keep_times
from animlora.workspace import Workspace
from toy_stage import ToyStage


class StatToyStage(ToyStage):
    """Reads the toy stage's outputs and knows them by size and time, as enhance, caption,
    dataset and train know their inputs."""

    name: ClassVar[str] = "toystat"
    folder: ClassVar[str] = "toystat"

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        outs = sorted(ctx.workspace.stage_path("toy").glob("*.out"))
        return [WorkItem(p.stem, digest(stat_key(str(p))), str(p), label=p.name) for p in outs]

    def process(self, job, item, progress) -> ItemOutput:
        from animlora.io.files import atomic_write_text

        rel = f"{item.key}.stat"
        atomic_write_text(job.output_dir / rel, str(len(Path(item.payload).read_text())))
        return ItemOutput(files=(rel,), data=1)

    def commit(self, ctx, item, output) -> None:
        pass

    def forget(self, ctx, item_key) -> None:
        pass

    def finish(self, ctx, summary) -> dict:
        return {}


def run(tmp_path: Path, out: Path):
    ws = Workspace.for_output(out)
    return Runner(ws, load_settings(), input_path=tmp_path / "in").run([ToyStage(), StatToyStage()])


def copy_without_times(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)  # as `cp -r`: every file gets the copy's time
    later = os.stat(src / "a.out").st_mtime_ns + 10**12
    for path in dst.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(later, later))


def test_a_copy_without_times_is_up_to_date_and_gets_the_times_back(tmp_path):
    (tmp_path / "in").mkdir()
    for name, text in {"a": "x", "b": "yy"}.items():
        (tmp_path / "in" / f"{name}.txt").write_text(text)
    first = run(tmp_path, tmp_path / "out")
    assert [s.items_done for s in first] == [2, 2]
    copy_without_times(tmp_path / "out", tmp_path / "copy")

    again = run(tmp_path, tmp_path / "copy")
    assert [s.up_to_date for s in again] == [True, True]  # without the times back: toystat redid both
    for name in ("a.out", "b.out", "a.stat", "b.stat"):
        assert os.stat(tmp_path / "copy" / name).st_mtime_ns == os.stat(tmp_path / "out" / name).st_mtime_ns

    # a file changed by hand keeps its new time, its new stamp is recorded, and what reads it redoes
    (tmp_path / "copy" / "a.out").write_text("Z")  # same size, other content
    later = os.stat(tmp_path / "out" / "a.out").st_mtime_ns + 2 * 10**12
    os.utime(tmp_path / "copy" / "a.out", ns=(later, later))
    changed = run(tmp_path, tmp_path / "copy")
    assert (changed[1].items_total, changed[1].items_skipped) == (2, 1)
    assert os.stat(tmp_path / "copy" / "a.out").st_mtime_ns == later
    with Catalog(tmp_path / "copy" / ".animlora" / "catalog.sqlite") as cat:
        row = cat.one("SELECT * FROM file_stamps WHERE path = 'a.out'")
        assert row["mtime_ns"] == later and row["size"] == 1
        assert {r["path"] for r in cat.rows("SELECT path FROM file_stamps")} == {"a.out", "b.out", "a.stat", "b.stat"}


def test_keep_times_counts_and_leaves_what_it_cannot_read(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    (tmp_path / "in" / "b.txt").write_text("yy")
    run(tmp_path, tmp_path / "out")
    ws = Workspace.for_output(tmp_path / "out")
    with ws.open_catalog() as cat:
        assert keep_times(cat, ws) == (0, 0)  # recorded by the run: nothing to do
        was = os.stat(tmp_path / "out" / "a.out").st_mtime_ns
        os.utime(tmp_path / "out" / "a.out", ns=(was + 5, was + 5))
        (tmp_path / "out" / "b.out").unlink()  # gone: not read, its stamp dropped with its record only
        assert keep_times(cat, ws, ["toystat"]) == (0, 0)  # another stage's files: not looked at
        assert keep_times(cat, ws, ["toy"]) == (1, 0)
        assert os.stat(tmp_path / "out" / "a.out").st_mtime_ns == was


def test_a_disk_with_coarse_times_is_read_once(tmp_path, monkeypatch):
    """FAT and exFAT keep times to 2 s: the time put back is rounded, and the stamp then says
    what the disk keeps, so the next run reads nothing again."""
    import animlora.pipeline.stamps as stamps

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    run(tmp_path, tmp_path / "out")
    real = os.utime

    def two_seconds(path, *args, ns, **kwargs):
        real(path, *args, ns=(ns[0], ns[1] // 2_000_000_000 * 2_000_000_000 + 2_000_000_000), **kwargs)

    monkeypatch.setattr(stamps.os, "utime", two_seconds)
    ws = Workspace.for_output(tmp_path / "out")
    was = os.stat(tmp_path / "out" / "a.out").st_mtime_ns
    real(tmp_path / "out" / "a.out", ns=(was + 10**12, was + 10**12))
    with ws.open_catalog() as cat:
        assert keep_times(cat, ws) == (1, 1)  # put back as near as the disk keeps it, and stamped so
        assert keep_times(cat, ws) == (0, 0)
