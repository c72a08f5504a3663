"""Atomic writes: every output is written to a temp name beside its target, then renamed.

A killed process leaves at most ``.tmp-*`` files, which :func:`clean_temp_files` removes
when the stage starts again; a reader never sees a half-written output.

Safety helpers, used by every writer through :func:`atomic_path`:
- :func:`confined_writes` (set by the runner around ``Stage.process``): a write that lands
  inside the workspace but outside the stage's folder (or its state folder), or whose path
  climbs with ``..``, is refused; every write is also appended to a journal, so the outputs
  of an item killed before its commit can be swept on the next run (:func:`sweep_journal`);
- :func:`inside`: join a name under a folder and refuse what escapes it;
- :func:`character_name_problem`: the one rule for a character's name (it becomes a folder);
- :func:`unique_names`: file-system names for a list of items, distinct by construction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animlora.errors import AnimloraError, disk_full, disk_full_error

TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class WriteScope:
    """Where the writes of one stage item may land (see :func:`confined_writes`)."""

    workspace: Path  # resolved workspace root
    allowed: tuple[Path, ...]  # resolved folders inside it that may be written
    journal: Path | None  # append-only list of (tag, written path), or None
    tag: str = ""  # the work item's key


_SCOPE: ContextVar[WriteScope | None] = ContextVar("animlora_write_scope", default=None)
# The same scope for threads the stage starts (writer pools do not inherit context vars):
# the runner processes one item at a time per process, so one process-wide scope is right.
_PROCESS_SCOPE: list[WriteScope] = []


@contextmanager
def confined_writes(workspace: Path, allowed: Sequence[Path], journal: Path | None = None,
                    tag: str = "") -> Iterator[None]:
    """Within the block, writes through :func:`atomic_path` must stay in ``allowed`` when
    they land inside ``workspace``, and are listed in ``journal`` (with ``tag``)."""
    scope = WriteScope(Path(workspace).resolve(), tuple(Path(a).resolve() for a in allowed), journal, tag)
    token = _SCOPE.set(scope)
    _PROCESS_SCOPE.append(scope)
    try:
        yield
    finally:
        _PROCESS_SCOPE.remove(scope)
        _SCOPE.reset(token)


def _check_write(target: Path) -> None:
    scope = _SCOPE.get() or (_PROCESS_SCOPE[-1] if _PROCESS_SCOPE else None)
    if scope is None:
        return
    if ".." in target.parts:
        raise AnimloraError(f"{target}: refusing to write a path that climbs out of its folder ('..')")
    resolved = target.resolve()
    if resolved.is_relative_to(scope.workspace) and not any(resolved.is_relative_to(a) for a in scope.allowed):
        raise AnimloraError(f"{target}: refusing to write outside the stage's folder ({scope.allowed[0]})")
    if scope.journal is not None:
        scope.journal.parent.mkdir(parents=True, exist_ok=True)
        with open(scope.journal, "a", encoding="utf-8") as handle:
            handle.write(json.dumps([scope.tag, str(resolved)]) + "\n")


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused (AnimloraError) when the result is not inside ``root``:
    an absolute part, ``..``, or a symlink that leads out."""
    base = Path(root)
    rel = Path(*parts) if parts else Path()
    if rel.is_absolute() or ".." in rel.parts or not (base / rel).resolve().is_relative_to(base.resolve()):
        raise AnimloraError(f"{str(rel)!r}: not a name inside {base}")
    return base / rel


CHARACTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
RESERVED_NAMES = frozenset({"noise"})


def portable(value: Any, root: Path | None) -> Any:
    """``value`` with every path string inside the project folder ``root`` written relative to
    it (in dicts, lists and tuples, at any depth; other values as they are): what a fingerprint
    hashes, so that a project moved or copied elsewhere is up to date. ``root`` None: as is."""
    if root is None:
        return value
    prefix = str(root).rstrip("/") + "/"
    return _portable(value, prefix)


def _portable(value: Any, prefix: str) -> Any:
    if isinstance(value, str):
        return value[len(prefix):] if value.startswith(prefix) else value
    if isinstance(value, Path):
        return _portable(str(value), prefix)
    if isinstance(value, dict):
        return {k: _portable(v, prefix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(v, prefix) for v in value)
    return value


def character_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a character (it becomes a folder and a file name), or None."""
    if not isinstance(name, str) or not name.strip():
        return "a character needs a name"
    if not CHARACTER_NAME_RE.match(name) or name.endswith((".", " ")):
        return (f"{name!r} cannot be a character name: use letters, digits, space, '_', '-', '.', "
                "start with a letter or digit, at most 64 characters")
    if name.lower() in RESERVED_NAMES:
        return f"{name!r} is reserved (images that are no character); choose another name"
    return None


def _fold(name: str) -> str:
    return name.casefold()  # two names equal but for case are one file on macOS/Windows


def unique_names(entries: Iterable[tuple[str, str]], default: str = "item") -> list[str]:
    """``[(stem, id), ...]`` -> one file-system name each, distinct by construction.

    A stem is cleaned (letters and digits of any script, ``-``, ``_`` and ``.`` kept, every
    other character ``_``, leading and trailing ``.``/``_`` dropped, ``default`` when
    nothing is left: the project's one sanitiser); a name that more than one entry would get
    (``a b`` and ``a_b``, or ``A`` and ``a``) takes ``-<id[:8]>`` (and a counter if that still
    collides). Give the entries in a stable order: the counter depends on it."""
    pairs = list(entries)
    base = [safe_name(stem, default) for stem, _ in pairs]
    counts: dict[str, int] = {}
    for name in base:
        counts[_fold(name)] = counts.get(_fold(name), 0) + 1
    out: list[str] = []
    taken: set[str] = set()
    for name, (_, ident) in zip(base, pairs, strict=True):
        candidate = name if counts[_fold(name)] == 1 else f"{name}-{ident[:8]}"
        extra = 0
        while _fold(candidate) in taken:  # ids alike in their first 8 characters, or a stem like another's suffixed name
            extra += 1
            candidate = f"{name}-{ident[:8]}-{extra}"
        taken.add(_fold(candidate))
        out.append(candidate)
    return out


def temp_path_for(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it is fsynced and renamed to ``path``."""
    target = Path(path)
    _check_write(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if disk_full(exc):
            raise disk_full_error(target, exc) from exc
        raise AnimloraError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def clean_temp_files(folder: str | Path) -> int:
    """Remove temp files a killed run left under ``folder``; return how many."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    removed = 0
    for tmp in root.rglob(f"{TEMP_PREFIX}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """``dst`` as a hard link to ``src`` (no second copy of the bytes), or a copy where links
    cannot be made (another file system); an existing ``dst`` is replaced."""
    import shutil

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), read in 1 MiB blocks: the one file hash of the project."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_name(text: object, default: str = "item") -> str:
    """A file or folder name from any text: the one sanitiser of the project.

    Letters and digits (any script), ``-``, ``_`` and ``.`` are kept; every other character
    becomes ``_`` (one for one, so ``"a (1)"`` is ``"a__1"``); leading and trailing ``.``/``_``
    are dropped, and an empty result is ``default``. Distinct texts can give one name
    (``"a b"`` and ``"a_b"``): a caller that needs unique names makes them so.
    """
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text)).strip("._")
    return cleaned or default


def remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the folders above ``path`` that are left empty, up to (not including) ``root``:
    a stale item's files go and so does the folder that held only them (a character that is
    no longer found leaves no empty ``character_8/``)."""
    root = root.resolve()
    parent = path.resolve().parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only an empty folder
        except OSError:
            return
        parent = parent.parent


def sweep_journal(journal: Path, folder: Path, recorded: set[str], done: set[str], spare: Sequence[Path] = ()) -> int:
    """Remove what an item killed before its commit (or failed) wrote: every file the
    journal lists, inside ``folder`` (not under ``spare``), not in ``recorded`` (resolved
    paths of every recorded output), written by an item not in ``done``. The journal is
    then removed. Returns how many files were removed."""
    if not journal.is_file():
        return 0
    root = folder.resolve()
    spared = [Path(p).resolve() for p in spare]
    removed = 0
    for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            tag, text = json.loads(line)
        except (ValueError, TypeError):
            continue  # a line cut by the kill
        path = Path(text)
        if (tag in done or text in recorded or not path.is_absolute() or not path.is_relative_to(root)
                or any(path.is_relative_to(s) for s in spared)):
            continue
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            remove_empty_parents(path, root)
            removed += 1
    journal.unlink(missing_ok=True)
    return removed
