"""A project copied without its files' times (``cp -r``, ``scp -r``, ``rsync -r`` without
``-t``) gets them back, so nothing is made again and no character trains again.

The stages tell a changed input from an unchanged one by its size and modification time
(:func:`animlora.curation.sources.stat_key`, the train stage's dataset fingerprint): cheap,
and right as long as times travel with the files. A copy that stamps every file with the time
of the copy made enhance, caption and dataset redo their work, and the dataset's new files
made every trained character train again.

So the catalog keeps, for every file a stage recorded as its output, the size, the time and a
digest of the content when it was written (``file_stamps``). At the start of a run, a file
whose size is as recorded and whose time is not is read: when its content is the same, its
recorded time is put back (``os.utime``); when it is not (edited by hand), the new stamp is
recorded and the stages see the change as before. A run records the stamps of what it wrote.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def digest_file(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def keep_times(catalog: Any, workspace: Any, stages: Iterable[str] | None = None) -> tuple[int, int]:
    """Check the recorded outputs of ``stages`` (every stage: ``None``) against their stamps:
    put back the time of each file whose content is unchanged, record the stamp of each file
    not seen before or changed. Returns (times put back, stamps recorded)."""
    from animlora.records.runs import done_outputs, file_stamps, set_file_stamps

    root = workspace.root.resolve()
    paths: list[str] = []
    folders: dict[str, str | None] = {}
    for name, outputs in done_outputs(catalog, None if stages is None else tuple(sorted(set(stages)))):
        if name not in folders:  # the stage's folder relative to the project ('.' standalone)
            folder = workspace.stage_path(name).resolve()
            folders[name] = str(folder.relative_to(root)) if folder.is_relative_to(root) else None
        prefix = folders[name]
        if prefix is None:
            continue
        for out in outputs:
            rel = os.path.normpath(os.path.join(prefix, out))
            if not rel.startswith(".."):
                paths.append(rel)
    known = file_stamps(catalog)
    restored, fresh = 0, {}
    base = str(root)
    for rel in paths:
        path = os.path.join(base, rel)
        try:
            st = os.stat(path)
        except OSError:
            continue  # gone: the runner makes it again where its stage does
        if not stat.S_ISREG(st.st_mode):
            continue
        size, mtime_ns, content = known.get(rel, (None, None, None))
        if (size, mtime_ns) == (st.st_size, st.st_mtime_ns):
            continue
        try:
            now = digest_file(path)
        except OSError:
            continue
        time_now = st.st_mtime_ns
        if size == st.st_size and content == now:
            try:
                os.utime(path, ns=(st.st_atime_ns, mtime_ns))
                restored += 1
                time_now = os.stat(path).st_mtime_ns
                if time_now == mtime_ns:
                    continue
                # a file system with coarser times (FAT, exFAT: 2 s) keeps it rounded: the stages
                # see a change once, and the next run finds the stamp as the disk keeps it
            except OSError:
                pass  # a file not ours to touch: its new time stands
        fresh[rel] = (st.st_size, time_now, now)
    gone = set(known) - set(paths) if stages is None else set()  # files no stage records any more
    if fresh or gone:
        set_file_stamps(catalog, fresh, gone)
    return restored, len(fresh)
