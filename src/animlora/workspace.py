"""A project's folder: where every stage writes, the catalog, the lock.

::

    <project>/
      project.yaml          settings of this project (layered over the package defaults)
      characters/           <name>.yaml per character: trigger word, references, overrides
      catalog.sqlite        the single source of truth (see catalog.py)
      <stage folders>       frames/, segmentation/, ... one per stage (records/folders.py)
      logs/                 one log file per run
      .animlora/            lock, per-stage manifests

A standalone command (``animlora extract --input f.mp4 --output frames/``) uses the same
machinery on a *standalone* workspace: the output folder is the stage folder, and the
catalog and manifests live in ``<output>/.animlora/``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from animlora.catalog import Catalog, now
from animlora.config.loader import CHARACTERS_DIR, PROJECT_FILE
from animlora.errors import WorkspaceError, WorkspaceLockedError

STATE_DIR = ".animlora"
CATALOG_FILE = "catalog.sqlite"


@dataclass(frozen=True)
class Workspace:
    root: Path
    standalone: bool = False

    # -- locating -------------------------------------------------------------------
    @classmethod
    def find(cls, start: str | Path | None = None) -> Workspace:
        """The project containing ``start`` (default: the current folder), by its project.yaml."""
        here = Path(start or Path.cwd()).resolve()
        if start is not None and not here.exists():
            raise WorkspaceError(f"{here}: no such folder (--project must name an animlora project folder)")
        if here.is_file():
            here = here.parent
        for folder in (here, *here.parents):
            if (folder / PROJECT_FILE).is_file():
                return cls(folder)
        if start is not None:
            raise WorkspaceError(
                f"{here}: not inside an animlora project (no {PROJECT_FILE} here or above); "
                f"make one with `animlora init NAME --video FILE --dir {here}`"
            )
        raise WorkspaceError(
            f"{here}: not inside an animlora project (no {PROJECT_FILE} here or above); "
            "run `animlora init NAME --video FILE` or pass --project"
        )

    @classmethod
    def for_output(cls, output_dir: str | Path) -> Workspace:
        return cls(Path(output_dir).resolve(), standalone=True)

    # -- paths ----------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def project_file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def characters_dir(self) -> Path:
        return self.root / CHARACTERS_DIR

    @property
    def catalog_path(self) -> Path:
        if self.standalone:
            return self.state_dir / CATALOG_FILE
        return self.root / CATALOG_FILE

    @property
    def logs_dir(self) -> Path:
        return (self.state_dir if self.standalone else self.root) / "logs"

    def stage_dir(self, folder: str) -> Path:
        """Where a stage writes: its own folder in a project, the output folder standalone."""
        return self.root if self.standalone else self.root / folder

    def stage_path(self, stage: str) -> Path:
        """Where ``stage`` writes: its folder in this project (an earlier release's name where
        the project has that folder, see records/folders.py), the output folder standalone."""
        from animlora.records.folders import stage_folder

        return self.root if self.standalone else self.root / stage_folder(stage, self.root)

    def manifest_path(self, stage: str) -> Path:
        return self.state_dir / "manifests" / f"{stage}.json"

    def resolve(self, path: str | Path) -> Path:
        """A path from project.yaml, relative to the project folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    # -- state ----------------------------------------------------------------------
    def open_catalog(self, *, reading: bool = False) -> Catalog:
        """The project's catalog. ``reading``: a command that only reads it (``status``) reads a
        project it cannot write (a read-only mount, another user's files) as it is."""
        if reading and self.catalog_path.is_file():
            from animlora.catalog import read_only_error

            if read_only_error(self.catalog_path) is not None:
                return Catalog(self.catalog_path, read_only=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return Catalog(self.catalog_path)

    @contextmanager
    def lock(self, wait: float = 2.0) -> Iterator[None]:
        """Exclusive lock for writers. The OS drops it when its process dies, so a lock
        left by a killed run is stale by construction and taken over at once. ``wait``
        seconds are allowed for a short holder (a review decision) to finish.

        A POSIX record lock (``lockf``), which a forked child does not inherit: OpenVINO forks a
        helper to send its telemetry when ISNet's runtime is imported, and with ``flock`` that
        child kept the workspace locked after the run had ended (a run right after was refused).
        Such a lock does not exclude its own process, so the workspaces this process holds are
        kept in ``_HELD`` too, and checked before the file is opened (closing any descriptor of
        the file would drop the process's lock)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "lock"
        key = str(path.resolve())
        deadline = time.monotonic() + wait
        while True:
            with _HELD_GUARD:
                if key not in _HELD:
                    _HELD.add(key)
                    break
            if time.monotonic() >= deadline:
                raise self._locked(f"pid {os.getpid()} on {socket.gethostname()}")
            time.sleep(0.05)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                while True:
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):  # those: another process holds it
                            raise
                        if time.monotonic() >= deadline:
                            holder = _describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                            raise self._locked(holder) from exc
                    time.sleep(0.05)
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}).encode(), 0)
                yield
            finally:
                os.close(fd)
        finally:
            with _HELD_GUARD:
                _HELD.discard(key)

    def _locked(self, holder: str) -> WorkspaceLockedError:
        return WorkspaceLockedError(
            f"{self.root}: another animlora run is writing this workspace ({holder}); wait for it to finish or stop it"
        )


# the workspace lock files this process holds (resolved paths): see Workspace.lock
_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}"
    except (ValueError, KeyError, TypeError):
        return "unknown process"
