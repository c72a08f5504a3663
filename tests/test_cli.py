from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import animlora_cmd, cli_env


def run_cli(*args: str, cwd=None, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(animlora_cmd(*args), capture_output=True, text=True, env=cli_env(), cwd=cwd, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from animlora.cli import app; "
        "heavy = [m for m in ('torch', 'cv2', 'numpy', 'av', 'transformers', 'sklearn', 'onnxruntime') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=True)
    assert out.stdout.strip() == "[]"
    assert run_cli("--help").returncode == 0


def test_init_creates_the_project_and_refuses_to_clobber_it(tmp_path):
    video = Path(__file__).parent / "data" / "bikes.mp4"
    proc = run_cli("init", "luca", "--video", str(video), "--dir", str(tmp_path / "luca"), "--json", check=True)
    assert json.loads(proc.stdout)["project"] == "luca"
    project = tmp_path / "luca"
    assert (project / "project.yaml").is_file() and (project / "catalog.sqlite").is_file()
    assert (project / "characters").is_dir() and (project / "frames").is_dir()
    again = run_cli("init", "luca", "--dir", str(project))
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error:") and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_init_with_a_missing_video_is_one_line(tmp_path):
    proc = run_cli("init", "x", "--video", str(tmp_path / "nope.mp4"), "--dir", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope.mp4'}: no such file"
    assert not (tmp_path / "x").exists()


def test_config_show_json_has_values_and_sources(tmp_path):
    run_cli("init", "p", "--dir", str(tmp_path / "p"), check=True)
    proc = run_cli("config", "show", "--json", "--set", "extract.max_per_shot=5", cwd=tmp_path / "p", check=True)
    data = json.loads(proc.stdout)
    assert data["extract.max_per_shot"] == {"value": 5, "source": "--set"}
    assert data["project.name"]["source"].endswith("project.yaml")
    assert data["segment.alpha_threshold"] == {"value": 0.15, "source": "profile 3d"}


def test_config_error_exits_1_with_one_line(tmp_path):
    run_cli("init", "p", "--dir", str(tmp_path / "p"), check=True)
    proc = run_cli("config", "show", "--set", "extract.mode=sometimes", cwd=tmp_path / "p")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: --set: extract.mode = 'sometimes' is not valid: allowed: scene, interval, all"
    ]


def test_status_outside_a_project_is_one_line(tmp_path):
    proc = run_cli("status", cwd=tmp_path)
    assert proc.returncode == 1
    assert "not inside an animlora project" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_status_json_lists_every_stage(tmp_path):
    run_cli("init", "p", "--dir", str(tmp_path / "p"), check=True)
    data = json.loads(run_cli("status", "--json", "-p", str(tmp_path / "p"), check=True).stdout)
    assert [s["stage"] for s in data["stages"]][0] == "extract"
    assert all(s["status"] == "not run" for s in data["stages"])
    project = tmp_path / "p"
    assert data["project_bytes"] == sum(f.stat().st_size for f in project.rglob("*") if f.is_file()) > 0
    assert data["disk_free_bytes"] == pytest.approx(shutil.disk_usage(project).free, rel=0.01)


def test_doctor_and_models_list_json():
    doctor = json.loads(run_cli("doctor", "--json", check=True).stdout)
    assert doctor["python"] == sys.version.split()[0]
    assert doctor["packages"]["av"] and "libavcodec" in doctor["ffmpeg"]
    assert isinstance(doctor["models"], list)
    models = json.loads(run_cli("models", "list", "--json", check=True).stdout)
    assert models["models"] == doctor["models"]
