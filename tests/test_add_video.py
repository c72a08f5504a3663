"""`animlora add-video`: the same probe as init, duplicates and unreadable files refused with one
line, project.yaml edited in place (comments kept), and the next run extracts the new video alone."""

from __future__ import annotations

import json
import shutil
import subprocess

from animlora.config import load_settings
from animlora.pipeline.runner import Runner
from animlora.stages import get_stage
from animlora.workspace import Workspace
from cli_support import animlora_cmd, cli_env
from media import make_clip

SETTINGS = "# my note about this project\nextract:\n  mode: interval  # keep: a comment of mine\n  interval_seconds: 0.4\n"


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(animlora_cmd(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=120)


def _extract(root):
    ws = Workspace(root)
    return Runner(ws, load_settings(root)).run([get_stage("extract")])[0]


def test_add_video_then_run_extracts_only_the_new_video(tmp_path):
    first, second = make_clip(tmp_path / "a.mp4", seed=1, shots=2), make_clip(tmp_path / "b c.mp4", seed=2, shots=2)
    proj = tmp_path / "proj"
    assert _cli("init", "proj", "--video", str(first), "--dir", str(proj), cwd=tmp_path).returncode == 0
    with (proj / "project.yaml").open("a") as f:
        f.write(SETTINGS)
    assert _extract(proj).items_done == 1

    added = _cli("add-video", str(second), "--json", cwd=proj)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["videos"] == [str(first), str(second)]
    text = (proj / "project.yaml").read_text()
    assert "# my note about this project" in text and "# keep: a comment of mine" in text
    summary = _extract(proj)
    assert (summary.items_total, summary.items_skipped, summary.items_done, summary.failures) == (2, 1, 2, ())
    assert sorted(p.name for p in (proj / "frames").iterdir() if p.is_dir()) == ["a", "b_c"]

    # refused, one line each, project.yaml untouched
    copy = shutil.copy(second, tmp_path / "copy.mp4")
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("not a video")
    before = (proj / "project.yaml").read_bytes()
    for bad, why in [(second, "already in the project"), (copy, "the same video as"),
                     (text_file, "notes.mp4"), (tmp_path / "missing.mp4", "no such file")]:
        result = _cli("add-video", str(bad), cwd=proj)
        assert result.returncode == 1, (bad, result.stderr)
        assert why in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert (proj / "project.yaml").read_bytes() == before


def test_the_videos_list_is_edited_in_place_in_both_yaml_styles():
    import yaml

    from animlora.cli.project import _videos_edit

    block = "# head\nproject:\n  name: p\n  videos:\n  - a.mp4  # first\n  profile: 3d\nembed: {}\n"
    flow = "project:\n  name: p\n  videos: []   # none yet\n"
    edited_block, edited_flow = _videos_edit(block, "b c.mp4"), _videos_edit(flow, "x.mp4")
    assert yaml.safe_load(edited_block)["project"]["videos"] == ["a.mp4", "b c.mp4"]
    assert "# head" in edited_block and "# first" in edited_block and "embed: {}" in edited_block
    assert yaml.safe_load(edited_flow)["project"]["videos"] == ["x.mp4"]
    assert "# none yet" in edited_flow
    assert _videos_edit("other: 1\n", "x.mp4") is None


def test_add_video_warns_only_where_the_others_are_extracted_again(tmp_path):
    """Scene mode: a project under extract.min_candidates in all shares that floor by length,
    so a new video moves the others' budgets (said in one line); beyond it each video's budget
    is its own (max_candidates caps a video, not the project), and nothing is said."""
    from animlora.cli.project import _budget_note

    first, second = make_clip(tmp_path / "a.mp4", seed=1, shots=2), make_clip(tmp_path / "b.mp4", seed=2, shots=2)
    proj = tmp_path / "proj"
    assert _cli("init", "proj", "--video", str(first), "--dir", str(proj), cwd=tmp_path).returncode == 0
    settings = load_settings(proj).settings

    def bounded(**values):
        return settings.model_copy(update={"extract": settings.extract.model_copy(update=values)})

    # ~2 s clips: a floor of 6 (under their 4 a second) is shared: 6 alone, 3 each with the second
    note = _budget_note(bounded(min_candidates=6), proj, [str(first)], [second])
    assert note is not None and "min_candidates 6" in note and "again" in note
    assert _budget_note(bounded(min_candidates=0, max_candidates=1), proj, [str(first)], [second]) is None


def test_a_folder_of_videos_at_init_and_added_later(tmp_path):
    """`init --video FOLDER` lists every video under it (sorted); `add-video FOLDER` adds the ones
    not yet in the project and leaves the rest; a file there that does not open is reported
    and left out, the others kept (exit 1); a folder without a video is one line naming it."""
    films = tmp_path / "films"
    (films / "season 2").mkdir(parents=True)
    make_clip(films / "b.mp4", seed=1, shots=2)
    make_clip(films / "a.mkv", seed=2, shots=2)
    (films / "notes.txt").write_text("not a video")
    created = _cli("init", "proj", "--video", str(films), "--dir", str(tmp_path / "proj"), "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["videos"] == [str(films / "a.mkv"), str(films / "b.mp4")]

    make_clip(films / "season 2" / "c.mp4", seed=3, shots=2)
    (films / "broken.mp4").write_text("not a video either")
    added = _cli("add-video", str(films), "--json", cwd=tmp_path / "proj")
    assert added.returncode == 1  # one file did not open: reported, the rest added
    out = json.loads(added.stdout)
    assert out["added"] == [str(films / "season 2" / "c.mp4")]
    assert sorted(out["already"]) == [str(films / "a.mkv"), str(films / "b.mp4")]
    assert [s["path"] for s in out["skipped"]] == [str(films / "broken.mp4")]
    assert len(load_settings(tmp_path / "proj").settings.project.videos) == 3
    assert "broken.mp4" in added.stderr and "skipped" in added.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = _cli("add-video", str(empty), cwd=tmp_path / "proj")
    assert refused.returncode != 0 and f"{empty}: no video files in this folder" in refused.stderr
