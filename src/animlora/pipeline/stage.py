"""The stage contract.

A stage turns input items into outputs in its own folder plus catalog rows::

    check_inputs(job)            validate up front; nothing written yet     (optional)
    plan(ctx) -> [WorkItem]      what there is to do, each with a stable key and fingerprint
    setup_worker(job)            once in each worker process before its first item, e.g. load
                                 the model into ``backends.registry.held``          (optional)
    process(job, item, progress) do one item: write files (atomically), return ItemOutput
                                 (runs in a worker process with the `process` executor)
    commit(ctx, item, output)    write the item's catalog rows (main process, one transaction
                                 with the runner's "item done" mark)                (optional)
    forget(ctx, item_key)        drop the catalog rows of an item that went away   (optional)
    finish(ctx, summary) -> dict whole-stage outputs (reports, plots); the report   (optional)

The runner skips items already done with the same fingerprint and settings, so a killed
stage resumes where it stopped, and a re-run adds only what is new.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import logging

    from animlora.catalog import Catalog
    from animlora.config import Settings
    from animlora.workspace import Workspace

Progress = Callable[[int, int], None]


def digest(*parts: object) -> str:
    """sha256 of the parts' reprs joined: the one hash used for keys and fingerprints."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class WorkItem:
    """One unit of resumable work: ``key`` is stable across runs, ``fingerprint``
    changes when the item's input changes (then it is redone). ``earlier``: the fingerprint
    an earlier release computed for the same input (before its recipe changed, e.g. to
    :func:`animlora.io.files.portable` paths); an item done under it is up to date, so upgrading redoes nothing,
    and keeps that recorded fingerprint. ``earlier_same``: the earlier recipe made the very same
    output (only what it hashed differed, e.g. where the project was): the record then takes
    the new fingerprint, so later the earlier recipe no longer counts (the dataset stage's,
    whose earlier one held the project's folder). ``earlier_key``: the key the same item was recorded under before (an earlier release's
    key, or one that named the input where it was); the runner moves that record to ``key``
    when nothing is recorded under ``key`` and no planned item claims the old one.
    ``held``: the item's input is out of reach now (a video on a drive not mounted): what a
    run recorded for it is kept as it is, neither redone nor forgotten, even under --force."""

    key: str
    fingerprint: str
    payload: Any = None
    label: str = ""
    earlier: str | None = None
    earlier_same: bool = False
    earlier_key: str | None = None
    held: bool = False


@dataclass(frozen=True)
class ItemOutput:
    """What ``process`` produced: files (relative to the stage folder) and data for ``commit``."""

    files: tuple[str, ...] = ()
    data: Any = None


@dataclass(frozen=True)
class StageJob:
    """Everything ``process`` may use; picklable, so it can go to a worker process."""

    settings: Settings
    output_dir: Path
    input_path: Path | None
    workspace_root: Path
    standalone: bool
    force: bool = False  # --force: redo up-to-date work (a stage with its own resume state starts over)


@dataclass
class StageContext:
    """The main-process view of a stage run: the job plus catalog, workspace and log."""

    job: StageJob
    workspace: Workspace
    catalog: Catalog
    log: logging.Logger
    force: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.job.settings

    @property
    def output_dir(self) -> Path:
        return self.job.output_dir


@dataclass(frozen=True)
class RunSummary:
    stage: str
    items_total: int
    items_done: int  # done now or before
    items_skipped: int  # already done before this run
    failures: tuple[tuple[str, str], ...]  # (item label, error)
    seconds: float
    up_to_date: bool = False
    note: str | None = None  # why the stage planned no work although it has inputs (Stage.plan_note)


class Stage(ABC):
    """Base of every stage. Subclasses set ``name`` (CLI and config section) and ``folder``."""

    name: ClassVar[str]
    folder: ClassVar[str]
    # Bump when the stage's outputs change meaning for the same settings: forces a re-run.
    version: ClassVar[str] = "1"
    # Stages whose outputs this one reads, for --from/--to and downstream invalidation.
    upstream: ClassVar[tuple[str, ...]] = ()
    # Set by plan() when it leaves out work on purpose (e.g. outputs nothing downstream reads
    # with these settings): one line, shown with the stage's summary.
    plan_note: str | None = None
    # An item done before whose recorded files were deleted since is made again (as make
    # remakes a deleted target). Off where an item costs GPU hours and its files are often
    # pruned by hand (train: checkpoints).
    remake_lost_outputs: ClassVar[bool] = True

    def output_present(self, ctx: StageContext, rel: str) -> bool:
        """Whether the file an item recorded (``rel``, under the stage folder) is still there."""
        return (ctx.output_dir / rel).is_file()

    def __repr__(self) -> str:
        return f"{self.name}"

    def settings_hash(self, settings: Settings) -> str:
        section = getattr(settings, self.name, None)
        return digest(self.version, section.fingerprint() if section is not None else "", settings.project.seed)

    def outdated(self, ctx: StageContext) -> str | None:
        """Why every earlier result is stale although the settings are not, or None (the
        default). The settings hash holds what was asked for, not what ran: a model stage's last
        run may have used a fallback backend that the one asked for can replace now, or other
        weights under the same name (``stages/fallback.py``)."""
        return None

    def ran(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """After a run's finish: record what :meth:`outdated` compares with next time."""

    def check_inputs(self, job: StageJob) -> None:  # noqa: B027 - optional hook
        """Raise BadInputError for unusable inputs before anything is written.

        Runs for every selected stage before the first one starts, so it may check only what
        exists already (a standalone input folder, settings, model weights), not upstream
        outputs of the same run."""

    @abstractmethod
    def plan(self, ctx: StageContext) -> list[WorkItem]: ...

    def setup_worker(self, job: StageJob) -> None:  # noqa: B027 - optional hook
        """Prepare a worker process (the ``process`` executor calls it once per worker).

        A stage that needs a model loads it here into :func:`animlora.backends.registry.held`
        and gets it from there in ``process``: a model kept on ``self`` would be loaded again
        for every item, since each item reaches a worker with its own copy of the stage."""

    def cost(self, item: WorkItem) -> float:
        """How much work ``item`` is, relative to the stage's other items (a shot's frames, a
        video's bytes). Parallel executors start the costliest first, so that a long item does
        not start last and run alone while the other workers idle; equal by default."""
        return 1.0

    @abstractmethod
    def process(self, job: StageJob, item: WorkItem, progress: Progress) -> ItemOutput: ...

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:  # noqa: B027
        """Write the item's catalog rows (inside the runner's transaction)."""

    def fail(self, ctx: StageContext, item: WorkItem, error: str) -> None:  # noqa: B027
        """Record a failed item in the stage's own tables (inside a transaction)."""

    def forget(self, ctx: StageContext, item_key: str) -> None:  # noqa: B027
        """Delete the catalog rows of an item that is no longer an input, or is redone."""

    def finish(self, ctx: StageContext, summary: RunSummary) -> dict[str, Any]:
        """Write whole-stage outputs; return the report (also kept in the manifest)."""
        return {}
