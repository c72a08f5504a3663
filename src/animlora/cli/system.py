"""Machine and model commands: doctor, repair, models list|pull|import."""

from __future__ import annotations

import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

from animlora.cli.common import JsonOpt, ProjectOpt, console, console_err, emit

models_app = typer.Typer(help="Model weights: list, pull for offline use, import local files.", no_args_is_help=True)

PACKAGES = (
    "av", "scenedetect", "opencv-python", "numpy", "pydantic", "omegaconf", "typer", "rich",
    "onnxruntime", "openvino", "scikit-learn", "fastapi", "uvicorn",
    "torch", "torchvision", "transformers", "diffusers", "peft", "accelerate", "spandrel", "safetensors",
    "huggingface_hub",
)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.command("repair")(repair)
    app.add_typer(models_app, name="models")
    models_app.command("list")(models_list)
    models_app.command("pull")(models_pull)
    models_app.command("import")(models_import)


def _settings(project: Path | None):
    """The project's settings (the one here or named), else the defaults."""
    from animlora.config import load_settings
    from animlora.errors import WorkspaceError
    from animlora.workspace import Workspace

    try:
        root = Workspace.find(project).root
    except WorkspaceError:
        if project is not None:
            raise
        root = None
    return load_settings(root).settings


def _models_settings(project: Path | None):
    return _settings(project).models


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_rows(settings: Any) -> list[dict[str, Any]]:
    from animlora.models import MODELS, locate

    rows = []
    for name, spec in sorted(MODELS.items()):
        where = locate(name, settings)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "used_by": list(spec.used_by),
                "present": where.path is not None,
                "path": str(where.path) if where.path else None,
                "found_in": where.source or None,
                "size_mb": round(_folder_size(where.path) / 2**20, 1) if where.path else spec.size_mb,
                "source": spec.hf_repo or spec.other_source_label,
                "license": spec.license,
            }
        )
    return rows


def models_list(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Every model a stage can use: present or not, size, where it comes from."""
    rows = model_rows(_models_settings(project))
    if as_json:
        emit({"models": rows}, True)
        return
    from rich.table import Table

    table = Table(title="models")
    # at 80 columns: names whole, the rest folded rather than cut with an ellipsis
    table.add_column("name", no_wrap=True)
    for column in ("kind", "used by", "present", "size MB", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        present = f"[green]yes[/] ({row['found_in']})" if row["present"] else "[red]no[/]"
        size = f"{row['size_mb']:.0f}" if row["size_mb"] else "?"
        table.add_row(row["name"], row["kind"], ", ".join(row["used_by"]), present, size, row["source"] or "")
    console.print(table)


def models_pull(
    name: Annotated[str, typer.Argument(help="Registry name (see `animlora models list`).")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model for offline use (the hub, or the model's other source)."""
    from animlora.models import pull

    settings = _models_settings(project)
    if as_json:
        location = pull(name, settings)
    else:  # a download takes a while: say so (the hub's own bars show bytes where it has them)
        with console_err.status(f"fetching {name} (Ctrl+C stops; run again to resume)…"):
            location = pull(name, settings)
    console_err.print(f"{name}: {location.path} ({location.source})", highlight=False, markup=False)
    emit({"name": name, "path": str(location.path), "source": location.source}, as_json)


def models_import(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    path: Annotated[Path, typer.Argument(help="A weights file or folder you already have.")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy local weights into animlora's model store (checksum checked where known)."""
    from animlora.models import import_model

    dest = import_model(name, path, _models_settings(project))
    console_err.print(f"{name}: imported to {dest}")
    emit({"name": name, "path": str(dest)}, as_json)


def _gpu() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": False, "cuda": False, "note": "torch not installed (pip install 'animlora[models]')"}
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["devices"] = [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
    return info


def _ray_nodes(address: str, project: Path | None) -> dict[str, Any]:
    """Every node of the Ray cluster at ``address``: does it see this project folder (the same
    storage at the same path, writable), and which animlora does it run."""
    from animlora import __version__
    from animlora.errors import MissingDependencyError, WorkspaceError
    from animlora.pipeline.executors import probe_ray_nodes
    from animlora.workspace import Workspace

    try:
        folder = Workspace.find(project).root
    except WorkspaceError:
        if project is not None:
            raise
        folder = Path.cwd()
    try:
        nodes = probe_ray_nodes(address, folder.resolve())
    except MissingDependencyError:
        raise
    except Exception as exc:  # noqa: BLE001 - cannot join: one line in the report
        return {"address": address, "folder": str(folder), "error": f"{type(exc).__name__}: {exc}"[:300], "nodes": []}
    for node in nodes:
        if node.get("animlora") not in (None, __version__) and "problem" not in node:
            node["problem"] = f"animlora {node['animlora']} on this node, {__version__} on the driver"
    return {"address": address, "folder": str(folder), "nodes": nodes}


def doctor(
    project: ProjectOpt = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Also check every node of this Ray cluster: sees the project folder, same animlora.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Python, packages, ffmpeg libraries, GPU/CUDA, disk, model weights (and every Ray node)."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        import av

        ffmpeg = {lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()}
    except ImportError:
        ffmpeg = {}
    from animlora.stages.fallback import cannot_run_lines

    full = _settings(project)
    settings = full.models
    disk_root = Path.cwd()
    usage = shutil.disk_usage(disk_root)
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "ffmpeg": ffmpeg,
        "gpu": _gpu(),
        "disk": {"path": str(disk_root), "free_gb": round(usage.free / 2**30, 1)},
        "models": model_rows(settings),
        # the stages whose backend, as the settings ask for it, cannot run here
        "cannot_run": cannot_run_lines(full),
    }
    if ray_address:
        report["ray"] = _ray_nodes(ray_address, project)
    bad = bool(ray_address) and (bool(report["ray"].get("error"))
                                 or any("problem" in n for n in report["ray"]["nodes"]))
    if as_json:
        emit(report, True)
        if bad:
            raise typer.Exit(1)
        return
    from rich.markup import escape  # "animlora[models]" is not markup

    console.print(f"python {report['python']} on {report['platform']}")
    for name, version in packages.items():
        console.print(f"  {name:18} {version or '[yellow]not installed[/]'}")
    console.print("ffmpeg libraries: " + (", ".join(f"{k} {v}" for k, v in ffmpeg.items()) or "[red]none[/]"))
    gpu = report["gpu"]
    if gpu.get("cuda"):
        for dev in gpu["devices"]:
            console.print(f"GPU: {dev['name']} {dev['memory_gb']} GB (CUDA {gpu['cuda_version']})")
    else:
        console.print(f"GPU: none usable ({escape(gpu.get('note') or 'torch sees no CUDA device')})")
    console.print(f"disk: {report['disk']['free_gb']} GB free at {disk_root}")
    present = [m["name"] for m in report["models"] if m["present"]]
    missing = [m["name"] for m in report["models"] if not m["present"]]
    console.print(f"models present: {', '.join(present) or 'none'}")
    if missing:
        console.print(f"models missing: {', '.join(missing)} (`animlora models pull NAME`)")
    for line in report["cannot_run"]:
        console.print(f"[yellow]![/] {escape(line)}", highlight=False, soft_wrap=True)
    if ray_address:
        cluster = report["ray"]
        if cluster.get("error"):
            console.print(f"Ray {escape(ray_address)}: [red]cannot join[/] ({escape(cluster['error'])})")
        else:
            console.print(f"Ray {escape(ray_address)}: {len(cluster['nodes'])} node(s), project folder {cluster['folder']}")
        for node in cluster["nodes"]:
            state = f"[red]{escape(node['problem'])}[/]" if "problem" in node else "[green]sees the project, writable[/]"
            console.print(f"  {node['host']} ({node['address']}, {node['cpus']:g} CPU, {node['gpus']:g} GPU, "
                          f"animlora {node.get('animlora', '?')}): {state}")
    if bad:
        raise typer.Exit(1)


def repair(project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """Check the catalog; when SQLite cannot read it, move it aside and start a fresh one that
    keeps the review decisions and caption edits still readable (every stage then re-runs)."""
    from animlora.catalog import check_integrity, salvage
    from animlora.review.service import open_workspace

    workspace = open_workspace(project.resolve() if project else None)
    path = workspace.catalog_path
    if not path.is_file():
        console_err.print(f"{path}: no catalog yet; nothing to repair")
        emit({"catalog": str(path), "status": "missing"}, as_json)
        return
    with workspace.lock():
        verdict = check_integrity(path)
        if verdict == "ok":
            console_err.print(f"{path}: the catalog is sound; nothing to repair")
            emit({"catalog": str(path), "status": "ok"}, as_json)
            return
        aside, kept = salvage(path)
    console_err.print(
        f"{path}: was damaged ({verdict}); moved to {aside.name}, a fresh catalog keeps "
        f"{kept.get('review_decisions', 0)} review decisions and {kept.get('captions', 0)} caption edits; "
        "`animlora run` redoes every stage",
        highlight=False, soft_wrap=True, markup=False,
    )
    emit({"catalog": str(path), "status": "repaired", "damaged_copy": str(aside), "kept": kept,
          "problem": verdict}, as_json)
