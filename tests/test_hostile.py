"""Hostile and careless inputs: each case asserts the exit code, one line naming the file,
no traceback, nothing written outside the project and the user's files intact.

The tally of these cases is in docs/reliability.md; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from animlora.errors import AnimloraError, ConfigError
from animlora.io.files import (
    atomic_write_text,
    character_name_problem,
    confined_writes,
    inside,
    sweep_journal,
    unique_names,
)
from animlora.pipeline.stage import ItemOutput, Stage, StageContext, StageJob, WorkItem, digest
from cli_support import animlora_cmd, cli_env

DATA = Path(__file__).parent / "data"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(animlora_cmd(*args), capture_output=True, text=True, env=cli_env(), cwd=cwd, timeout=120)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *names: str) -> str:
    """Exit ``code``, no traceback, exactly one line on stderr naming each of ``names``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    got = lines(proc.stderr)
    assert len(got) == 1, proc.stderr
    for name in names:
        assert name in got[0], (name, got[0])
    return got[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (the user's files, to prove them intact)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "thesis.txt").write_text("four years of work")
    (folder / "photos").mkdir()
    (folder / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return snapshot(folder)


# -- the command line: every typo is one usage message, never a traceback -----------------
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("bogus",), 2, "No such command"),
        (("run", "--bogus"), 2, "No such option"),
        (("init",), 2, "Missing argument"),
        (("status", "-p"), 2, "requires an argument"),
        (("run", "--from"), 2, "requires an argument"),
    ],
)
def test_cli_typos_are_usage_errors(args, code, says):
    proc = run_cli(*args)
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr and says in proc.stderr
    assert len(lines(proc.stderr)) <= 4  # Usage / Try / Error


def test_version_and_short_help():
    from animlora import __version__

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"animlora {__version__}"
    for args in (("-h",), ("run", "-h"), ("review", "-h")):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout and not proc.stderr.strip(), args


# -- project files that are not what they should be ----------------------------------------
def test_non_utf8_project_yaml(tmp_path):
    project = tmp_path / "p"
    assert run_cli("init", "p", "--dir", str(project)).returncode == 0
    (project / "project.yaml").write_bytes("project:\n  name: caf\xe9\n".encode("latin-1"))
    assert_one_line(run_cli("config", "show", "-p", str(project)), 1, "project.yaml", "UTF-8")
    assert_one_line(run_cli("run", "-p", str(project)), 1, "project.yaml", "UTF-8")


@pytest.mark.parametrize("damage", ["random", "cut"])
def test_damaged_catalog_then_repair(tmp_path, damage):
    import sqlite3

    project = tmp_path / "p"
    assert run_cli("init", "p", "--dir", str(project)).returncode == 0
    catalog = project / "catalog.sqlite"
    con = sqlite3.connect(catalog)
    con.execute("INSERT INTO review_decisions (ts, action, payload) VALUES (1, 'rename', '{}')")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [(f"k{i}", "x" * 500) for i in range(400)])
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = catalog.read_bytes()
    if damage == "random":
        catalog.write_bytes(os.urandom(len(data)))
    else:  # cut in half, and the page map scrambled
        catalog.write_bytes(data[:100] + os.urandom(4000) + data[4100 : len(data) // 2])
    line = assert_one_line(run_cli("status", "-p", str(project)), 1, "catalog", "damaged", "animlora repair")
    assert "catalog.sqlite" in line
    repaired = run_cli("repair", "-p", str(project), "--json")
    assert repaired.returncode == 0 and "Traceback" not in repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["status"] == "repaired" and Path(result["damaged_copy"]).is_file()
    assert run_cli("status", "-p", str(project)).returncode == 0
    assert json.loads(run_cli("repair", "-p", str(project), "--json").stdout)["status"] == "ok"


def test_a_full_disk_is_said_as_such_not_as_damage(tmp_path):
    """SQLite says "database or disk is full" and a write says ENOSPC: the message is the full
    disk and running again (not "damaged ... animlora repair", which would start every stage
    over), naming where."""
    import errno
    import sqlite3

    from animlora.catalog import Catalog, damaged
    from animlora.errors import DiskFullError, disk_full
    from animlora.io.files import atomic_path

    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    pages = catalog.conn.execute("PRAGMA page_count").fetchone()[0]
    catalog.conn.execute(f"PRAGMA max_page_count = {pages}")  # no page more: as on a full disk
    with pytest.raises(sqlite3.DatabaseError) as raised:
        catalog.conn.executemany("INSERT INTO meta VALUES (?, ?)", [(f"k{i}", "x" * 4000) for i in range(50)])
    catalog.close()
    error = damaged(path, raised.value)
    assert isinstance(error, DiskFullError)
    assert str(error).startswith(f"{path}: the disk is full") and "MB free" in str(error)
    assert "repair" not in str(error) and "run the same command again" in str(error)

    target = tmp_path / "frames" / "f1.png"
    with pytest.raises(DiskFullError, match=r"f1\.png: the disk is full \(No space left on device\)"), \
            atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert not list(target.parent.iterdir())  # the half-written file is gone

    class SafetensorError(Exception):  # what safetensors' Rust writer raises on a full tmpfs (measured)
        pass

    assert disk_full(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not disk_full(OSError(errno.ENOENT, os.strerror(errno.ENOENT))) and not disk_full(ValueError("full"))


@pytest.mark.parametrize("why", ["read-only mount", "another user's"])
def test_a_project_that_cannot_be_written_is_not_called_damaged(tmp_path, monkeypatch, why):
    """A project on a read-only mount, or files another user (root, a container) wrote: the
    catalog does not open for writing. The message says so, not "damaged ... animlora
    repair"; `status` reads the project as it is."""
    import sqlite3

    from animlora.catalog import Catalog
    from animlora.workspace import Workspace

    project = tmp_path / "p"
    assert run_cli("init", "p", "--dir", str(project)).returncode == 0
    catalog = project / "catalog.sqlite"
    before = catalog.read_bytes()
    real_connect, real_access, real_statvfs = sqlite3.connect, os.access, os.statvfs

    def connect(target, *args, **kwargs):  # what SQLite says where it cannot write the WAL's files
        if "immutable=1" not in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)

    if why == "read-only mount":
        monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=real_statvfs(p).f_flag | os.ST_RDONLY))
        expected = "read-only file system"
    else:
        monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
        expected = "is not yours to write"
    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(AnimloraError) as raised:
        Catalog(catalog)
    message = str(raised.value)
    assert message.startswith(f"{catalog}: the project cannot be written here") and expected in message
    assert "damaged" not in message and "repair" not in message
    with Workspace(project).open_catalog(reading=True) as read:  # what `status` opens
        assert read.rows("SELECT name FROM schema_migrations")
    assert catalog.read_bytes() == before


def test_init_dir_is_a_file_and_video_is_text(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert_one_line(run_cli("init", "p", "--dir", str(blocker)), 1, "notes.txt", "not a folder")
    assert blocker.read_text() == "mine"
    text = tmp_path / "film.mp4"
    text.write_text("this is not a video")
    assert_one_line(run_cli("init", "p", "--dir", str(tmp_path / "p"), "--video", str(text)), 1, "film.mp4")
    assert not (tmp_path / "p").exists()
    # a folder of videos: none of them opens (the one above is text)
    assert_one_line(run_cli("init", "p", "--dir", str(tmp_path / "p"), "--video", str(tmp_path)), 1,
                    str(tmp_path), "no video file in this folder opens", "film.mp4")
    assert not (tmp_path / "p").exists()
    # a DVD's folder: its VOB files are one film in parts, said with what to do
    dvd = tmp_path / "dvd" / "VIDEO_TS"
    dvd.mkdir(parents=True)
    (dvd / "VTS_01_1.VOB").write_bytes(b"\0" * 2048)
    assert_one_line(run_cli("init", "p", "--dir", str(tmp_path / "p"), "--video", str(dvd.parent)), 1,
                    str(dvd.parent), "no video files in this folder", "DVD's VOB files", "concat:VTS_01_1.VOB")
    assert not (tmp_path / "p").exists()


def test_a_blu_rays_folder_gives_its_film_not_its_menus_and_extras(tmp_path):
    """BDMV/STREAM holds a disc's clips: menus, trailers, extras and the film. Listed as videos
    each would be extracted; the largest is the film, taken with a warning that says so."""
    import shutil

    films = tmp_path / "films"
    stream = films / "disc" / "BDMV" / "STREAM"
    stream.mkdir(parents=True)
    shutil.copyfile(Path(__file__).parent / "data" / "bikes.mp4", films / "other.mp4")
    shutil.copyfile(Path(__file__).parent / "data" / "bikes.mp4", stream / "00001.m2ts")  # the film
    for clip, size in (("00000.m2ts", 4096), ("00002.m2ts", 65536)):  # a menu, an extra
        (stream / clip).write_bytes(b"\0" * size)
    proc = run_cli("init", "p", "--dir", str(tmp_path / "p"), "--video", str(films))
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in lines(proc.stderr) if "Blu-ray" in line]
    assert len(warned) == 1 and "00001.m2ts" in warned[0] and "other 2 left out" in warned[0]
    listed = (tmp_path / "p" / "project.yaml").read_text()
    assert "00001.m2ts" in listed and "other.mp4" in listed
    assert "00000.m2ts" not in listed and "00002.m2ts" not in listed


# -- --force never deletes what animlora did not write ---------------------------------------
def test_demo_into_a_users_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from animlora.cli import app, project

    mine = tmp_path / "mine"
    before = user_folder(mine)
    proc = run_cli("demo", "--dir", str(mine))
    line = assert_one_line(proc, 1, str(mine), "not empty")
    assert "--force" in line and snapshot(mine) == before
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    assert_one_line(run_cli("demo", "--dir", str(not_dir)), 1, "file.txt")
    # --force: the demo is added beside the user's files (the stages themselves are not the point here)
    monkeypatch.setattr(project, "run_project", lambda *a, **k: [])
    result = CliRunner().invoke(app, ["demo", "--dir", str(mine), "--force"])
    assert result.exit_code == 0, result.output
    after = snapshot(mine)
    assert {k: v for k, v in after.items() if k in before} == before
    assert (mine / "project.yaml").is_file()
    again = CliRunner().invoke(app, ["demo", "--dir", str(mine), "--force"])  # a demo project now: re-run
    assert again.exit_code == 0 and {k: v for k, v in snapshot(mine).items() if k in before} == before


# -- names unique by construction ------------------------------------------------------------
def test_unique_names():
    assert unique_names([("a b", "1111111111"), ("a_b", "2222222222"), ("c", "3")]) == [
        "a_b-11111111", "a_b-22222222", "c"]
    assert unique_names([("Luca", "aaaaaaaaa1"), ("luca", "bbbbbbbbb2")]) == ["Luca-aaaaaaaa", "luca-bbbbbbbb"]
    # ids alike in their first 8 characters still give distinct names
    names = unique_names([("x", "abcdefgh1"), ("x", "abcdefgh2"), ("x-abcdefgh", "z")])
    assert len({n.casefold() for n in names}) == 3
    assert unique_names([("../../etc", "1")]) == ["etc"]


def test_videos_named_alike_get_their_own_frames(tmp_path):
    import sqlite3

    import media

    clip = media.make_clip(tmp_path / "src.mp4", seed=5, shots=1, frames_per_shot=12)
    other = media.make_clip(tmp_path / "src2.mp4", seed=9, shots=1, frames_per_shot=12)
    project = tmp_path / "p"
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a b.mp4").write_bytes(clip.read_bytes())
    (videos / "a_b.mp4").write_bytes(other.read_bytes())
    assert run_cli("init", "p", "--dir", str(project), "--video", str(videos / "a b.mp4"),
                   "--video", str(videos / "a_b.mp4")).returncode == 0
    proc = run_cli("run", "-p", str(project), "--to", "extract", "--set", "extract.mode=interval",
                   "--set", "extract.interval_seconds=0.1")
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(project / "catalog.sqlite")
    names = sorted(r[0] for r in con.execute("SELECT name FROM videos"))
    assert len(set(names)) == 2 and all(n.startswith("a_b-") for n in names)
    paths = [r[0] for r in con.execute("SELECT path FROM frames WHERE kept = 1")]
    assert len(paths) == len(set(paths)) > 0
    assert all((project / "frames" / p).is_file() for p in paths)
    folders = {p.split("/")[0] for p in paths}
    assert folders == set(names)


def test_standalone_images_named_alike_are_two_items(tmp_path):
    import numpy as np

    from animlora.io.images import write_image
    from animlora.stages.segment import SegmentStage

    folder = tmp_path / "imgs"
    write_image(folder / "a b.png", np.zeros((8, 8, 3), np.uint8))
    write_image(folder / "a_b.png", np.full((8, 8, 3), 255, np.uint8))
    ctx = SimpleNamespace(job=SimpleNamespace(input_path=folder, standalone=True))
    items = SegmentStage()._plan_standalone(ctx)
    assert len({item.key for item in items}) == 2
    outputs = [frame["name"] for item in items for frame in item.payload]
    assert len(set(outputs)) == 2


# -- character names are checked where they enter --------------------------------------------
@pytest.mark.parametrize(
    ("file", "text", "says"),
    [
        ("evil.yaml", "name: ../../x/y\n", "cannot be a character name"),
        ("abs.yaml", "name: /tmp/animlora-escape\n", "cannot be a character name"),
        ("...yaml", "trigger: x\n", "from the file name"),
        ("noise.yaml", "description: x\n", "reserved"),
        ("n.yaml", "name: Noise\n", "reserved"),
        ("bin.yaml", b"name: caf\xe9\n", "UTF-8"),
    ],
)
def test_bad_character_files(tmp_path, file, text, says):
    from animlora.config.loader import load_character

    path = tmp_path / "characters" / file
    path.parent.mkdir()
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as err:
        load_character(path)
    message = str(err.value)
    assert says in message and str(path) in message and "\n" not in message


def test_bad_character_name_on_the_command_line(tmp_path):
    project = tmp_path / "p"
    assert run_cli("init", "p", "--dir", str(project)).returncode == 0
    (project / "characters" / "evil.yaml").write_text("name: ../../../escape\n")
    assert_one_line(run_cli("config", "show", "-p", str(project), "--character", "../../etc/passwd"), 1,
                    "cannot be a character name")
    assert_one_line(run_cli("config", "show", "-p", str(project), "--character", "evil"), 1, "evil.yaml")
    assert not (tmp_path / "escape").exists()


def test_character_names():
    for good in ("luca", "Alberto Scorfano", "bunny-2", "v1.0"):
        assert character_name_problem(good) is None, good
    for bad in ("", " ", "..", ".", "../x", "/abs", "a/b", "a\\b", "noise", "x" * 65, "ends.", "-x", "tab\tname"):
        assert character_name_problem(bad), bad


def test_trigger_is_found_when_the_file_is_named_otherwise(tmp_path):
    from animlora.config.loader import find_character

    chars = tmp_path / "characters"
    chars.mkdir()
    (chars / "hero.yaml").write_text("name: luca\ntrigger: lcapgrs\n")
    spec = find_character(chars, "luca")
    assert spec is not None and spec.trigger_word == "lcapgrs"
    assert find_character(chars, "alberto") is None


# -- writes stay inside the stage's folder; a killed item leaves nothing behind ---------------
def test_writes_are_confined_to_the_stage_folder(tmp_path):
    root = tmp_path / "project"
    stage = root / "captions"
    stage.mkdir(parents=True)
    journal = root / ".animlora" / "journal" / "x.txt"
    with confined_writes(root, [stage], journal, "item1"):
        atomic_write_text(stage / "luca" / "a.txt", "ok")
        # (an absolute path outside the project is a model cache's business; names never become
        # one, since character_name_problem refuses them where they enter)
        for bad in (stage / ".." / ".." / "escape.txt", root / "project.yaml", root / "frames" / "x.txt",
                    stage / "luca" / ".." / ".." / "characters" / "x.yaml"):
            with pytest.raises(AnimloraError):
                atomic_write_text(bad, "no")
        # a writer thread the stage starts is held to the same scope
        import threading

        errors = []

        def writer():
            try:
                atomic_write_text(root / "characters" / "x.yaml", "no")
            except AnimloraError as exc:
                errors.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        assert len(errors) == 1 and not (root / "characters" / "x.yaml").exists()
    assert (stage / "luca" / "a.txt").read_text() == "ok"
    assert not (tmp_path / "escape.txt").exists() and not (root / "project.yaml").exists()
    assert [json.loads(line)[0] for line in journal.read_text().splitlines()] == ["item1"]
    with pytest.raises(AnimloraError):
        inside(stage, "../x")
    with pytest.raises(AnimloraError):
        inside(stage, "/etc/passwd")
    assert inside(stage, "luca", "a.txt") == stage / "luca" / "a.txt"
    # the sweep removes what no item recorded, and only that
    (stage / "user.txt").write_text("the user's")
    assert sweep_journal(journal, stage, recorded=set(), done=set()) == 1
    assert not (stage / "luca" / "a.txt").exists() and (stage / "user.txt").read_text() == "the user's"
    assert not journal.exists()


class KilledStage(Stage):
    """Writes two files per item, named by the settings (as real stages do); KILL_ON=<key>
    kills the process between the two writes."""

    name: ClassVar[str] = "toy"
    folder: ClassVar[str] = "toy"

    def settings_hash(self, settings):
        return digest(self.version, settings.project.seed)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(k, digest(k), k, label=k) for k in ("a", "b", "c")]

    def process(self, job: StageJob, item: WorkItem, progress) -> ItemOutput:
        seed = job.settings.project.seed
        first, second = f"{item.key}-{seed}.mask", f"{item.key}-{seed}.cut"
        atomic_write_text(job.output_dir / first, "1")
        if os.environ.get("KILL_ON") == item.key:
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write_text(job.output_dir / second, "2")
        return ItemOutput(files=(first, second))


def _run_killed_stage(out: Path, seed: int) -> None:
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.workspace import Workspace

    loaded = load_settings(overrides={"project": {"seed": seed}})
    Runner(Workspace.for_output(out), loaded).run([KilledStage()])


def test_kill_then_settings_change_leaves_no_orphans(tmp_path):
    out = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from test_hostile import _run_killed_stage; _run_killed_stage(Path(sys.argv[2]), 1)")
    env = {**cli_env(), "KILL_ON": "b"}
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["a-1.cut", "a-1.mask", "b-1.mask"]
    _run_killed_stage(out, 2)  # the settings changed: everything is redone
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "a-2.cut", "a-2.mask", "b-2.cut", "b-2.mask", "c-2.cut", "c-2.mask"]


def test_a_failed_items_partial_files_are_removed(tmp_path):
    class Fails(KilledStage):
        def process(self, job, item, progress):
            atomic_write_text(job.output_dir / f"{item.key}.mask", "1")
            if item.key == "b":
                raise ValueError("boom")
            return ItemOutput(files=(f"{item.key}.mask",))

    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.workspace import Workspace

    out = tmp_path / "out"
    out.mkdir()
    (out / "b.mask.user").write_text("mine")
    [summary] = Runner(Workspace.for_output(out), load_settings()).run([Fails()])
    assert len(summary.failures) == 1
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["a.mask", "b.mask.user", "c.mask"]


# -- images that are not what their names say ------------------------------------------------
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG that claims ``width`` x ``height`` (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [12_000, 40_000])
def test_decompression_bomb_is_named_and_refused(tmp_path, side):
    from animlora.errors import BadInputError
    from animlora.io.images import read_image

    bomb = _png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(BadInputError) as err:
        read_image(bomb)
    assert "bomb.png" in str(err.value) and "\n" not in str(err.value)


def test_folders_and_link_loops_named_like_images_are_reported(tmp_path, caplog):
    import numpy as np

    from animlora.io.images import list_images, write_image

    write_image(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "album.png").mkdir()
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    with caplog.at_level("WARNING", logger="animlora"):
        assert list_images(tmp_path) == [tmp_path / "ok.png"]
    text = caplog.text
    assert "album.png" in text and "a folder" in text and "loop.jpg" in text and "loop" in text


def test_project_option_naming_nothing(tmp_path):
    line = assert_one_line(run_cli("run", "-p", str(tmp_path / "nowhere")), 1, "nowhere", "no such folder")
    assert "pass --project" not in line
    line = assert_one_line(run_cli("status", "-p", str(tmp_path)), 1, str(tmp_path), "animlora init")
    assert "pass --project" not in line


def test_dataset_resolution_has_an_upper_bound(tmp_path):
    project = tmp_path / "p"
    assert run_cli("init", "p", "--dir", str(project)).returncode == 0
    assert_one_line(run_cli("config", "show", "-p", str(project), "--set", "dataset.resolution=100000"), 1,
                    "dataset.resolution", "4096")


def test_config_show_section(tmp_path):
    shown = run_cli("config", "show", "review", "--json", cwd=tmp_path)
    assert shown.returncode == 0 and all(k.startswith("review.") for k in json.loads(shown.stdout))
    assert_one_line(run_cli("config", "show", "nope", cwd=tmp_path), 1, "'nope'", "sections:")
