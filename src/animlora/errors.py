"""The one exception tree of animlora.

Every error a user can cause is an :class:`AnimloraError`; the CLI prints its message
on one line and exits 1 (``ANIMLORA_DEBUG=1`` shows the traceback). Third-party errors
are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = [
    "AnimloraError",
    "BadInputError",
    "ConfigError",
    "DiskFullError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "StageError",
    "WorkspaceError",
    "WorkspaceLockedError",
    "disk_full",
    "disk_full_error",
    "require_packages",
]


class AnimloraError(Exception):
    """Base of every error animlora raises on purpose."""


class ConfigError(AnimloraError):
    """A setting is unknown, malformed or out of range; the message names key and file."""


class BadInputError(AnimloraError):
    """An input file or folder cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class WorkspaceError(AnimloraError):
    """The project folder is missing, incomplete or from an incompatible version."""


class WorkspaceLockedError(WorkspaceError):
    """Another live process is writing the same workspace."""


class DiskFullError(WorkspaceError):
    """The disk (or the user's quota) a project writes to is full. The run stops at once:
    every later write would fail too. What was done before is recorded and kept."""


# ENOSPC: no space left on the device; EDQUOT: the user's disk quota is used up
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SQLITE_FULL = 13  # SQLite's result code for "database or disk is full"


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk is full: an OSError
    with ENOSPC or EDQUOT, SQLite's SQLITE_FULL, a :class:`DiskFullError`, or another
    library's error whose message carries the OS's words for either."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if type(exc).__module__ == "sqlite3" and getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        if any(os.strerror(code) in str(exc) for code in _FULL_ERRNOS):
            return True  # a library that reports the OS error in its own type (safetensors' writer)
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: str | Path | None, exc: BaseException | None = None) -> DiskFullError:
    """The one message for a full disk: where, how much is free now, and that running the
    same command again, once there is space, loses nothing."""
    import shutil

    where, free = f"{path}: " if path else "", ""
    folder = Path(path) if path else None
    while folder is not None and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder is not None:
        with contextlib.suppress(OSError):
            free = f", {shutil.disk_usage(folder).free / 2**20:,.0f} MB free"
    why = f" ({getattr(exc, 'strerror', None) or exc})" if exc is not None else ""
    return DiskFullError(f"{where}the disk is full{why}{free}; free space there and run the same command again "
                         "(what was done is kept)")


class StageError(AnimloraError):
    """A stage cannot run (missing upstream output, nothing to do where something is required)."""


class MissingDependencyError(AnimloraError):
    """An optional dependency is not installed; the message has the exact pip line."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed: "
            f"pip install 'animlora[{extra}]'"
        )


def require_packages(packages: tuple[str, ...], extra: str, purpose: str) -> None:
    """Raise MissingDependencyError for the first of ``packages`` that cannot be imported
    (found without importing it), so a base install gets the pip line, not ModuleNotFoundError."""
    import importlib.util

    for package in packages:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingDependencyError(package, extra, purpose)


class ModelNotFoundError(AnimloraError):
    """Model weights could not be found anywhere the resolver looked."""

    def __init__(self, name: str, looked: list[str], fix: str) -> None:
        self.name = name
        self.looked = looked
        super().__init__(f"model '{name}' not found (looked in: {'; '.join(looked)}); {fix}")
