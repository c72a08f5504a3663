"""Project commands: init, add-video, run, status, config show, demo."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from animlora.cli.common import (
    ForceOpt,
    JsonOpt,
    ProjectOpt,
    SetOpt,
    console,
    console_err,
    emit,
    overrides_tree,
    print_summaries,
    progress_bar,
    setup_logging,
    stage_wants_gpu,
    summaries_json,
)
from animlora.errors import BadInputError

config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("add-video")(add_video)
    app.command("run")(run)
    app.command("status")(status)
    app.command("demo")(demo)
    app.add_typer(config_app, name="config")
    config_app.command("show")(config_show)


def _workspace(project: Path | None):
    from animlora.workspace import Workspace

    return Workspace.find(project)


def probe_video(path: Path) -> None:
    """Open the file as a video now (its first frame), so a text file given as --video fails
    at init, not at the first run. The end of the file is left to extract."""
    try:
        import av  # noqa: F401
    except ImportError:
        return  # the base install cannot decode; extract will say what to install
    from animlora.io.video import probe

    probe(path, check_end=False)


def expand_videos(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The videos ``paths`` name: a file as it is (checked later, where a bad one is an error),
    a folder as the video files under it (sorted, recursive, as `animlora extract --input`
    reads one), each opened now. Returns (videos, [(file, why) for the folder's files that
    do not open]): those are left out and reported, the rest kept. A folder without a video
    that opens is an error naming it."""
    from animlora.io.video import list_videos, no_videos_error

    videos: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if not path.is_dir():
            videos.append(path)
            continue
        found = list_videos(path)
        if not found:
            raise no_videos_error(path)
        opened = []
        for video in found:
            try:
                probe_video(video)
            except BadInputError as exc:
                skipped.append((video, exc.problem))
                continue
            opened.append(video)
        if not opened:
            first, why = skipped[-1]
            raise BadInputError(path, f"no video file in this folder opens ({first.name}: {why})")
        videos += opened
    return videos, skipped


def create_project(folder: Path, name: str, videos: list[Path], profile: str) -> Path:
    """Write a new project folder; refuses an existing project.yaml."""
    import yaml

    from animlora.config import load_settings
    from animlora.errors import WorkspaceError
    from animlora.stages import stage_names
    from animlora.workspace import Workspace

    folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise BadInputError(folder, "not a folder; give --dir a folder (it is created when missing)")
    if (folder / "project.yaml").exists():
        raise WorkspaceError(f"{folder / 'project.yaml'}: a project already exists here")
    for video in videos:
        if not video.exists():
            raise BadInputError(video, "no such file")
        if not video.is_file():
            raise BadInputError(video, "not a video file")
        probe_video(video)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for video in videos:
        resolved = video.resolve()
        try:
            entries.append(str(resolved.relative_to(folder)))
        except ValueError:
            entries.append(str(resolved))
    project_yaml = {"project": {"name": name, "profile": profile, "videos": entries}}
    (folder / "project.yaml").write_text(
        "# animlora project. Every setting not given here comes from the package defaults and the\n"
        "# profile; `animlora config show` lists the merged result and where each value came from.\n"
        + yaml.safe_dump(project_yaml, sort_keys=False)
    )
    workspace = Workspace(folder)
    load_settings(folder)  # validates what was just written
    workspace.characters_dir.mkdir(exist_ok=True)
    for stage_name in stage_names():
        workspace.stage_path(stage_name).mkdir(exist_ok=True)
    workspace.logs_dir.mkdir(exist_ok=True)
    workspace.open_catalog().close()
    return folder


def init(
    name: Annotated[str, typer.Argument(help="Project name; also its folder unless --dir is given.")],
    video: Annotated[list[Path] | None, typer.Option(
        "--video", "-v", help="A video file, or a folder of videos (every video under it); repeatable.")] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="Project folder (default: ./NAME).")] = None,
    profile: Annotated[str, typer.Option("--profile", help="3d (default) or 2d.")] = "3d",
    as_json: JsonOpt = False,
) -> None:
    """Create a project folder: project.yaml, the catalog, one folder per stage."""
    videos, skipped = expand_videos(list(video or []))
    folder = create_project(directory or Path(name), name, videos, profile)
    _print_skipped(skipped)
    console_err.print(f"created project [bold]{name}[/] in {folder} ({len(videos)} videos)")
    result: dict[str, Any] = {"project": name, "path": str(folder), "videos": [str(v) for v in videos]}
    if skipped:
        result["skipped"] = [{"path": str(p), "reason": why} for p, why in skipped]
    emit(result, as_json)
    if skipped:
        raise typer.Exit(1)


def _print_skipped(skipped: list[tuple[Path, str]]) -> None:
    for path, why in skipped:
        console_err.print(f"[yellow]skipped:[/] {path}: {why}", highlight=False)


def _videos_edit(text: str, entry: str) -> str | None:
    """project.yaml's text with ``entry`` appended to ``project.videos``, everything else (the
    user's comments, order, other sections) as it was; None when the list is not plainly there."""
    import json

    import yaml

    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return None
    project = next((v for k, v in root.value if k.value == "project"), None)
    if not isinstance(project, yaml.MappingNode):
        return None
    videos = next((v for k, v in project.value if k.value == "videos"), None)
    if not isinstance(videos, yaml.SequenceNode):
        return None
    if videos.flow_style or not videos.value:  # videos: [] or [a, b]: rewrite the brackets
        items = [node.value for node in videos.value] + [entry]
        start, end = videos.start_mark.index, videos.end_mark.index
        return text[:start] + json.dumps(items, ensure_ascii=False) + text[end:]
    lines = text.splitlines(keepends=True)
    last = videos.value[-1]
    # the line after the last item (its end mark sits at the next line's start)
    after = last.end_mark.line if last.end_mark.column == 0 else last.end_mark.line + 1
    first = videos.value[0]
    dash = lines[first.start_mark.line][: first.start_mark.column]  # "  - " as the file writes it
    new = dash + json.dumps(entry, ensure_ascii=False) + "\n"
    if after > 0 and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    return "".join(lines[:after] + [new] + lines[after:])


class AlreadyListed(BadInputError):
    """The video (or a copy of its content) is in the project already."""


def add_video_to_project(workspace: Any, video: Path) -> dict[str, Any]:
    """List ``video`` in project.yaml after the checks ``init`` makes (exists, a file, decodes)
    and refusing one already listed (the same file, or a copy of its content: an
    :class:`AlreadyListed`). Earlier results stay valid: the next run extracts the new video
    alone and carries it downstream."""
    import yaml

    from animlora.config import load_settings
    from animlora.errors import ConfigError
    from animlora.io.files import atomic_write_text
    from animlora.io.video import content_id
    from animlora.stages.extract import listed_video

    if not video.exists():
        raise BadInputError(video, "no such file")
    if not video.is_file():
        raise BadInputError(video, "not a video file")
    probe_video(video)
    root = workspace.root
    yaml_path = root / "project.yaml"
    with workspace.lock():
        text = yaml_path.read_text(encoding="utf-8")
        listed = load_settings(root).settings.project.videos
        resolved = video.resolve()
        new_id = content_id(resolved)
        for entry in listed:
            other = listed_video(root, entry).resolve()
            if other == resolved:
                raise AlreadyListed(video, f"already in the project (project.videos: {entry})")
            if other.is_file() and content_id(other) == new_id:
                raise AlreadyListed(video, f"the same video as {entry}, already in the project")
        try:
            entry = str(resolved.relative_to(root))
        except ValueError:
            entry = str(resolved)
        edited = _videos_edit(text, entry)
        if edited is None:  # no plain list to append to: write the merged mapping (comments go)
            data = yaml.safe_load(text) or {}
            data.setdefault("project", {})["videos"] = [*listed, entry]
            edited = yaml.safe_dump(data, sort_keys=False)
        atomic_write_text(yaml_path, edited)
        try:
            videos = load_settings(root).settings.project.videos
        except ConfigError:
            atomic_write_text(yaml_path, text)
            raise
    return {"project": str(root), "added": entry, "videos": list(videos), "listed_before": list(listed)}


def _budget_note(settings: Any, root: Path, listed: list[str], added: list[Path]) -> str | None:
    """Scene mode raises a project under ``extract.min_candidates`` in all to it, shared by
    duration: there a new video changes the others' share, and their frames are extracted
    again (beyond the floor a video's budget is its own: :func:`project_budget`)."""
    s = settings.extract
    if s.mode != "scene":
        return None
    from animlora.stages.extract import listed_video, project_budget, video_seconds

    before = [video_seconds(listed_video(root, e)) for e in listed]
    after = [*before, *(video_seconds(p) for p in added)]
    bounds = (s.candidates_per_minute, s.min_candidates, s.max_candidates)
    if not before or project_budget(before, *bounds) == project_budget(after, *bounds)[: len(before)]:
        return None
    return (f"this project has under extract.min_candidates {s.min_candidates} frames in all, shared by the "
            f"videos' lengths; with the video added the other videos' share changes, so the next run extracts them "
            f"again too (a small project that will grow: set extract.min_candidates to 0 before its first run)")


def add_video(
    video: Annotated[Path, typer.Argument(
        help="The video file to add, or a folder: every video under it not yet in the project.")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a video (or a folder's videos) to the project: the next `animlora run` processes them alone (earlier results stay)."""
    from animlora.config import load_settings
    from animlora.stages.extract import listed_video

    workspace = _workspace(project)
    if not video.is_dir():
        done = add_video_to_project(workspace, video)
        added, listed, skipped, already = [done["added"]], done["listed_before"], [], []
    else:
        found, skipped = expand_videos([video])
        added, already, listed = [], [], None
        for path in found:
            try:
                done = add_video_to_project(workspace, path)
            except AlreadyListed:
                already.append(str(path))
                continue
            except BadInputError as exc:
                skipped.append((path, exc.problem))
                continue
            added.append(done["added"])
            listed = done["listed_before"] if listed is None else listed
    root = workspace.root
    settings = load_settings(root).settings
    videos = list(settings.project.videos)
    note = _budget_note(settings, root, listed, [listed_video(root, a) for a in added]) if added and listed else None
    _print_skipped(skipped)
    if already:
        console_err.print(f"{len(already)} already in the project, left as they are", highlight=False)
    if note:
        console_err.print(f"[yellow]warning:[/] {note}", highlight=False)
    if not added:
        console_err.print(f"nothing added ({len(videos)} videos)", highlight=False)
    else:
        what = added[0] if len(added) == 1 else f"{len(added)} videos"
        tail = "" if note else "; `animlora run` processes " + ("it, and only it" if len(added) == 1 else
                                                                 "them, and only them")
        console_err.print(f"added {what} ({len(videos)} videos){tail}", highlight=False)
    result: dict[str, Any] = {"project": str(root), "added": added[0] if not video.is_dir() else added,
                              "videos": videos}
    if video.is_dir():
        result["already"] = already
    if skipped:
        result["skipped"] = [{"path": str(p), "reason": why} for p, why in skipped]
    if note:
        result["warning"] = note
    emit(result, as_json)
    if skipped:
        raise typer.Exit(1)


def run_project(
    workspace: Any, sets: list[str] | None, start: str | None, stop: str | None, force: bool, show_progress: bool,
    ray_address: str | None = None,
) -> list[Any]:
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.stages import select_stages

    flags = {"runner.executor": "ray", "runner.ray_address": ray_address} if ray_address else {}
    loaded = load_settings(workspace.root, overrides=overrides_tree(sets, flags))
    stages = select_stages(start, stop)
    setup_logging(workspace.logs_dir)
    with progress_bar(show_progress) as progress:
        return Runner(workspace, loaded, force=force, progress=progress, gpu_check=stage_wants_gpu).run(stages)


def run(
    project: ProjectOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="First stage to run.")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="Last stage to run.")] = None,
    force: ForceOpt = False,
    sets: SetOpt = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Run the stages' items on this Ray cluster (runner.executor ray).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every stage in order; up-to-date stages are skipped, cut-short ones resume."""
    workspace = _workspace(project)
    summaries = run_project(workspace, sets, start, stop, force, not as_json, ray_address)
    print_summaries(summaries)
    datasets = dataset_ending(workspace, summaries, sets)
    emit({"stages": summaries_json(summaries), **({"datasets": datasets} if datasets else {})}, as_json)
    if any(s.failures for s in summaries):
        raise typer.Exit(1)


def dataset_ending(workspace: Any, summaries: list[Any], sets: list[str] | None = None) -> dict[str, Any] | None:
    """The run's ending table (per character: images, shots, what was left out and why), printed
    when the dataset stage was part of the run; its JSON for --json. Its lines name each stage
    whose output a fallback backend made (``fallbacks``: what to pull or install instead)."""
    if not any(s.stage == "dataset" for s in summaries):
        return None
    from animlora.config import load_settings
    from animlora.curation.summary import ending, print_ending
    from animlora.stages.dataset import RESULTS_FILE

    summary = ending(workspace.stage_path("dataset") / RESULTS_FILE)
    if summary is not None:
        summary["fallbacks"] = fallbacks(workspace, load_settings(workspace.root, overrides=overrides_tree(
            sets, {})).settings)
        summary["lines"] += summary["fallbacks"]
        print_ending(summary, console_err)
    return summary


def fallbacks(workspace: Any, settings: Any) -> list[str]:
    """One line per stage whose recorded output a fallback backend made (``stages/fallback.py``)."""
    from animlora.stages.fallback import fallback_lines

    catalog = workspace.open_catalog(reading=True)
    try:
        return fallback_lines(catalog, settings)
    finally:
        catalog.close()


def status_rows(workspace: Any) -> list[dict[str, Any]]:
    from animlora.records.runs import count_done, failed_items, stage_run
    from animlora.stages import stage_names

    catalog = workspace.open_catalog(reading=True)
    try:
        rows = []
        for name in stage_names():
            run = stage_run(catalog, name)
            errors = failed_items(catalog, name)
            rows.append(
                {
                    "stage": name,
                    "status": ("skipped: no input items" if run and run.status == "done" and not run.items_total
                               else run.status if run else "not run"),
                    "items_done": count_done(catalog, name),
                    "items_total": run.items_total if run else 0,
                    "items_failed": len(errors),
                    "settings_hash": run.settings_hash[:12] if run else None,
                    "seconds": run.seconds if run else None,
                    "errors": [{"item": key, "error": error} for key, error in errors],
                }
            )
        return rows
    finally:
        catalog.close()


def status(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Per stage: items done/total, failures, settings hash, time, errors."""
    from rich.markup import escape
    from rich.table import Table

    from animlora.config import load_settings
    from animlora.stages.extract import listed_video

    workspace = _workspace(project)
    rows = status_rows(workspace)
    settings = load_settings(workspace.root).settings
    listed = settings.project.videos
    missing = [entry for entry in listed if not listed_video(workspace.root, entry).is_file()]
    used, free = _disk_use(workspace.root)
    fell_back = fallbacks(workspace, settings)
    if as_json:
        emit({"project": str(workspace.root), "stages": rows, "videos": list(listed), "videos_missing": missing,
              "fallbacks": fell_back, "project_bytes": used, "disk_free_bytes": free}, True)
        return
    table = Table(title=f"animlora project {workspace.root}")
    for column in ("stage", "status", "done/total", "failed", "settings", "time"):
        table.add_column(column)
    for row in rows:
        secs = f"{row['seconds']:.1f}s" if row["seconds"] is not None else "-"
        table.add_row(
            row["stage"], row["status"], f"{row['items_done']}/{row['items_total']}",
            str(row["items_failed"]), row["settings_hash"] or "-", secs,
        )
    console.print(table)
    for row in rows:
        for err in row["errors"]:
            console.print(f"[red]✗[/] {row['stage']} {err['item']}: {err['error']}", highlight=False, soft_wrap=True)
    for line in fell_back:
        console.print(f"[yellow]![/] {escape(line)}", highlight=False, soft_wrap=True)  # "animlora[models]"
    if listed:
        console.print(f"videos: {len(listed)} listed" + (f", {len(missing)} not found (what was made from them is "
                                                          "kept):" if missing else ""), highlight=False)
    for entry in missing:
        console.print(f"  [yellow]![/] {entry}", highlight=False, soft_wrap=True)
    console.print(f"disk: the project holds {used / 2**20:,.0f} MB; {free / 2**20:,.0f} MB free where it is",
                  highlight=False)


def _disk_use(root: Path) -> tuple[int, int]:
    """(bytes of the files under the project, bytes free on its disk): a run that fills the disk
    stops and loses nothing, but knowing the room before a folder of films saves the stop."""
    import os

    used = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                used += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue  # removed while walked
    return used, shutil.disk_usage(root).free


def config_show(
    section: Annotated[str | None, typer.Argument(help="Only this section (or dotted key prefix), e.g. extract.")] = None,
    project: ProjectOpt = None,
    character: Annotated[str | None, typer.Option("--character", help="Include characters/NAME.yaml.")] = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The merged, validated settings, with where each value came from."""
    from animlora.config import load_settings
    from animlora.config.loader import flatten_keys

    try:
        root = _workspace(project).root
    except Exception:
        if project is not None:
            raise
        root = None  # outside a project: package defaults
    loaded = load_settings(root, character=character, overrides=overrides_tree(sets))
    flat = flatten_keys(loaded.settings.model_dump(mode="json"))
    if section:
        prefix = section.rstrip(".")
        flat = {k: v for k, v in flat.items() if k == prefix or k.startswith(prefix + ".")}
        if not flat:
            from animlora.errors import ConfigError

            sections = sorted({k.split(".")[0] for k in flatten_keys(loaded.settings.model_dump(mode="json"))})
            raise ConfigError(f"no setting {section!r}; sections: {', '.join(sections)}")
    if as_json:
        emit({key: {"value": value, "source": loaded.source_of(key)} for key, value in flat.items()}, True)
        return
    from rich.table import Table

    table = Table(title="settings")
    table.add_column("key", no_wrap=True)  # at 80 columns: keys whole, values and sources folded, never cut
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for key, value in flat.items():
        table.add_row(key, repr(value), loaded.source_of(key))
    console.print(table)


# The sample is 5 s of one character in one shot: sample it densely and accept a small
# dataset, so every stage has something to show. Written into the demo's project.yaml.
DEMO_SETTINGS = """
# demo: a 5-second, one-shot clip needs denser sampling and smaller minimums than a film
extract:
  mode: interval
  interval_seconds: 0.25
cluster:
  min_cluster_size: 5
dataset:
  min_size: 3
  target_size: 16
  resolution: 512
"""


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to create the demo project.")] = Path("animlora-demo"),
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The README's main job on the bundled sample clip (Big Buck Bunny, CC-BY 3.0).

    ``--force`` redoes every stage; it never deletes a file."""
    from animlora.data import sample_clip
    from animlora.errors import BadInputError, WorkspaceError
    from animlora.workspace import Workspace

    folder = directory.resolve()
    if folder.exists() and not folder.is_dir():
        raise BadInputError(folder, "not a folder; choose another --dir")
    if not (folder / "project.yaml").exists():
        # --force never deletes: it lets the demo be made inside a folder that holds other files
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise WorkspaceError(f"{folder}: not empty and not an animlora project; choose another --dir "
                                 "or pass --force (which adds the demo beside what is there and deletes nothing)")
        clip = sample_clip()
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / clip.name
        if not local.exists():
            shutil.copy2(clip, local)
        create_project(folder, "demo", [local], "3d")
        with open(folder / "project.yaml", "a") as handle:
            handle.write(DEMO_SETTINGS)
    workspace = Workspace(folder)
    summaries = run_project(workspace, None, None, None, force, not as_json)
    print_summaries(summaries)
    datasets = dataset_ending(workspace, summaries)
    rows = status_rows(workspace)
    console_err.print(f"demo project: {folder}  (inspect with `animlora status -p {folder}`)")
    emit({"project": str(folder), "stages": summaries_json(summaries), "status": rows,
          **({"datasets": datasets} if datasets else {})}, as_json)
    if any(s.failures for s in summaries):
        raise typer.Exit(1)
