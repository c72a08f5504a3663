"""Atomic writes: every output is written to a temp name beside its target, then renamed.

A killed process leaves at most ``.tmp-*`` files, which :func:`clean_temp_files` removes
when the stage starts again; a reader never sees a half-written output.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from animlora.errors import AnimloraError

TEMP_PREFIX = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it is fsynced and renamed to ``path``."""
    target = Path(path)
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
