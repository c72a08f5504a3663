"""The one exception tree of animlora.

Every error a user can cause is an :class:`AnimloraError`; the CLI prints its message
on one line and exits 1 (``ANIMLORA_DEBUG=1`` shows the traceback). Third-party errors
are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AnimloraError",
    "BadInputError",
    "ConfigError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "StageError",
    "WorkspaceError",
    "WorkspaceLockedError",
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
