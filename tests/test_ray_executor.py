"""The Ray executor on a local Ray head (2 CPUs) through a real stage chain (extract → segment →
prefilter) on two generated clips: the same catalog rows and files (sha256) as the serial
executor, a worker killed mid-item survived, and `animlora run --ray-address` joining the head.

One Ray head serves the whole module (Ray's start-up is the slow part)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# Ray reads its token when it is imported: the head and every client (this process, the CLI
# runs) share one, as a cluster's nodes do.
TOKEN = secrets.token_hex(32)
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}
os.environ.update(AUTH)
ray = pytest.importorskip("ray")

from animlora.cli.project import create_project  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from animlora.pipeline.runner import Runner  # noqa: E402
from animlora.stages import get_stage  # noqa: E402
from animlora.workspace import Workspace  # noqa: E402
from media import make_clip  # noqa: E402
from ray_stages import KilledOnceSegment, worker_pythonpath  # noqa: E402

STAGES = ("extract", "segment", "prefilter")
SETTINGS = {"segment": {"backend": "classic"}, "extract": {"mode": "interval", "interval_seconds": 0.4}}
YAML = "segment:\n  backend: classic\nextract:\n  mode: interval\n  interval_seconds: 0.4\n"




def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": worker_pythonpath(), **AUTH}


@pytest.fixture(scope="module")
def head_process(tmp_path_factory):
    """A local Ray head with 2 CPUs, as `ray start --head` makes one on a cluster (token auth,
    the token given to every client in RAY_AUTH_TOKEN). Started with --block in a process group
    of its own, so the test stops exactly the processes it started; it comes up while the
    serial reference runs (see `head`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tmp_path_factory.mktemp("ray")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    start = [ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
             "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"]
    proc = subprocess.Popen(start, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        yield proc, f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the head's group: ray start, GCS, raylet, its workers
        proc.wait()


@pytest.fixture(scope="module")
def head(head_process, serial) -> str:
    proc, address = head_process
    for line in proc.stdout:  # "Ray runtime started." once the head can take clients
        if "Ray runtime started" in line:
            return address
    raise RuntimeError(f"ray start exited with {proc.wait()}")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("clips")
    return [make_clip(root / f"film{k}.mp4", seed=k, shots=2, frames_per_shot=10) for k in (1, 2)]


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """Where every run of the module makes its project: one path, so that keys and fingerprints
    (which hold paths) compare equal."""
    return tmp_path_factory.mktemp("work") / "p"


def _project(root: Path, clips: list[Path]) -> Workspace:
    if root.exists():
        shutil.rmtree(root)
    folder = create_project(root, "p", clips, "3d")
    with (folder / "project.yaml").open("a") as f:
        f.write(YAML)
    return Workspace(folder)


def _run(ws: Workspace, stages: list, **runner: object):
    loaded = load_settings(ws.root, overrides={**SETTINGS, "runner": runner})
    return Runner(ws, loaded).run(stages)


def snapshot(root: Path) -> tuple[dict[str, str], dict[str, list]]:
    """sha256 of every output file, and every catalog row but run times."""
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and ".animlora" not in p.parts
             and p.name not in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "killed-once")
             and "logs" not in p.parts}
    rows: dict[str, list] = {}
    with sqlite3.connect(root / "catalog.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in (t for t in tables if t != "schema_migrations"):  # when the catalog was made
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})")
                       if c[1] not in ("finished_at", "started_at", "seconds", "created_at", "updated_at",
                                    "mtime_ns")]  # file_stamps: when the file was written
            rows[table] = sorted(map(repr, db.execute(f"SELECT {', '.join(columns)} FROM {table}")))
    return files, rows


@pytest.fixture(scope="module")
def serial(place, clips, head_process):
    ws = _project(place, clips)
    summaries = _run(ws, [get_stage(s) for s in STAGES], executor="serial")
    assert [s.failures for s in summaries] == [(), (), ()]
    assert summaries[1].items_total == 4  # several shots over two films: more items than workers
    return snapshot(ws.root)


def test_cli_run_joins_a_ray_head_and_equals_the_serial_executor(place, clips, head, serial):
    ws = _project(place, clips)
    result = subprocess.run([sys.executable, "-m", "animlora", "run", "--to", "prefilter", "--ray-address", head,
                             "--json"], cwd=ws.root, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    got = snapshot(ws.root)
    assert got[0] == serial[0]
    assert got[1] == serial[1]


def test_a_worker_killed_mid_item_is_retried_and_outputs_equal_serial(place, clips, head, serial):
    ws = _project(place, clips)
    stages = [get_stage("extract"), KilledOnceSegment(), get_stage("prefilter")]
    summaries = _run(ws, stages, executor="ray", workers=2, ray_address=head, ray_retries=2)
    assert (ws.root / "killed-once").is_file()  # a worker was killed
    assert [s.failures for s in summaries] == [(), (), ()]
    got = snapshot(ws.root)
    assert got[0] == serial[0]
    assert got[1] == serial[1]
    assert not ray.is_initialized()  # the run's Ray session ended with it


def test_a_worker_that_cannot_see_the_project_is_one_clear_error(place, clips, head):
    ws = _project(place, clips)
    stage = get_stage("extract")
    job = Runner(ws, load_settings(ws.root, overrides=SETTINGS)).job_for(stage)
    shutil.rmtree(job.output_dir)  # as on a node where the project folder is not mounted
    from animlora.errors import StageError
    from animlora.pipeline.executors import ray_session, run_ray

    with ray_session(head, 2), pytest.raises(StageError, match="cannot see the project folder"):
        list(run_ray(stage, job, _plan(stage, ws, job), 2))


def _plan(stage, ws, job):
    import logging

    from animlora.pipeline.stage import StageContext

    catalog = ws.open_catalog()
    try:
        return stage.plan(StageContext(job=job, workspace=ws, catalog=catalog, log=logging.getLogger()))
    finally:
        catalog.close()


def test_gpu_backends_ask_ray_for_gpus_and_cpu_backends_do_not():
    from animlora.cli.common import stage_wants_gpu
    from animlora.pipeline.executors import uses_actors

    settings = load_settings(overrides={"segment": {"backend": "sam2"}, "embed": {"backend": "clip", "device": "cpu"},
                                        "inpaint": {"backend": "opencv"}}).settings
    asked = {name: (stage_wants_gpu(get_stage(name), settings, 8.0), stage_wants_gpu(get_stage(name), settings, 0.0))
             for name in ("extract", "segment", "embed", "inpaint")}
    assert asked == {"extract": (False, False), "segment": (True, False), "embed": (False, False),
                     "inpaint": (False, False)}
    # a model held per worker (setup_worker) or a GPU: actors; otherwise plain tasks
    assert uses_actors(get_stage("segment"), gpu=False) and uses_actors(get_stage("embed"), gpu=True)
    assert not uses_actors(get_stage("extract"), gpu=False)


def test_doctor_checks_every_ray_node_sees_the_project(place, clips, head, tmp_path):
    import json

    ws = _project(place, clips)
    result = subprocess.run([sys.executable, "-m", "animlora", "doctor", "--ray-address", head, "--json"],
                            cwd=ws.root, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    cluster = json.loads(result.stdout)["ray"]
    assert cluster["folder"] == str(ws.root) and len(cluster["nodes"]) == 1  # the head is the one node
    assert [(n["sees_project"], n["writable"], "problem" in n) for n in cluster["nodes"]] == [(True, True, False)]
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".animlora-doctor")]  # its check file is gone
    # a node whose folder of that path is not the driver's (a local disk, not the shared one)
    from animlora.pipeline.executors import node_report

    (tmp_path / ".check").write_text("another run")
    row = node_report(str(tmp_path), ".check", "token")
    assert (row["sees_project"], row["problem"]) == (False, f"{tmp_path} on this node is another folder "
                                                            "(the driver's check file differs)")
    assert "cannot read" in node_report(str(tmp_path / "absent"), ".check", "token")["problem"]
