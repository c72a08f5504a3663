from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from animlora.errors import WorkspaceError, WorkspaceLockedError
from animlora.workspace import Workspace
from cli_support import cli_env

HOLD_LOCK = """
import sys, time
from pathlib import Path
from animlora.workspace import Workspace
with Workspace(Path(sys.argv[1])).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_find_walks_up_to_project_yaml(tmp_path):
    (tmp_path / "project.yaml").write_text("project: {name: x}\n")
    (tmp_path / "frames" / "deep").mkdir(parents=True)
    assert Workspace.find(tmp_path / "frames" / "deep").root == tmp_path.resolve()
    with pytest.raises(WorkspaceError, match="not inside an animlora project"):
        Workspace.find(tmp_path.parent)


def test_lock_excludes_a_second_writer_in_process(tmp_path):
    ws = Workspace(tmp_path)
    with ws.lock(), pytest.raises(WorkspaceLockedError, match="another animlora run"), ws.lock():
        pass
    with ws.lock():  # released
        pass


def test_a_child_forked_while_the_lock_is_held_does_not_keep_it(tmp_path):
    # OpenVINO's telemetry forks a helper during a run (ISNet on the CPU); it outlived the run and kept
    # the workspace locked, so the next run was refused as "another animlora run"
    ws = Workspace(tmp_path)
    with ws.lock():
        child = os.fork()
        if child == 0:  # the helper: lives on after the run
            time.sleep(30)
            os._exit(0)
    try:
        with ws.lock(wait=0):  # the run is over: free at once
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_lock_of_a_killed_process_is_stale_and_taken_over(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=cli_env()
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(WorkspaceLockedError, match=f"pid {proc.pid}"), Workspace(tmp_path).lock():
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 5
        while True:
            try:
                with Workspace(tmp_path).lock():
                    break
            except WorkspaceLockedError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        proc.kill()


def test_standalone_paths(tmp_path):
    ws = Workspace.for_output(tmp_path / "out")
    assert ws.stage_dir("frames") == (tmp_path / "out").resolve()
    assert ws.catalog_path == (tmp_path / "out" / ".animlora" / "catalog.sqlite").resolve()
