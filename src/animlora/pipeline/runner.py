"""Runs stages in order, skipping what is up to date and resuming what was cut short.

Per stage:
1. check inputs, then plan the items;
2. work out the stage key (stage version + settings + the keys of upstream stages): when it
   differs from the last run's, every earlier result of this stage is stale and is removed
   (files and rows), so the stage and everything downstream re-run;
3. drop items that are no longer inputs, and items whose fingerprint changed;
4. process the rest, committing each item's rows and its "done" mark in one transaction;
5. call ``finish`` and write the manifest.

A kill at any point leaves finished items marked done and everything else re-done on the
next run; outputs are written under temp names and renamed, so none is half-written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from animlora import __version__
from animlora.catalog import Catalog, now
from animlora.config import LoadedSettings
from animlora.errors import AnimloraError, ConfigError, DiskFullError, StageError, disk_full, disk_full_error
from animlora.io.files import (
    atomic_write_json,
    clean_temp_files,
    confined_writes,
    remove_empty_parents,
    sweep_journal,
)
from animlora.pipeline.executors import ray_session, run_pool, run_ray, run_serial
from animlora.pipeline.stage import RunSummary, Stage, StageContext, StageJob, WorkItem, digest
from animlora.pipeline.stamps import keep_times
from animlora.records.runs import done_items
from animlora.workspace import Workspace

log = logging.getLogger("animlora")


def stage_key_of(stage: Stage, settings_hash: str, catalog: Catalog) -> str:
    upstream = []
    for name in stage.upstream:
        row = catalog.one("SELECT stage_key FROM stage_runs WHERE stage = ?", (name,))
        upstream.append((name, row["stage_key"] if row else None))
    return digest(settings_hash, upstream)


def _rekey_earlier(items: list[WorkItem], catalog: Catalog, stage: str) -> None:
    """Records kept under an item's ``earlier_key`` move to its key (the item's input is the
    same, only its name changed): when nothing is recorded under the key yet and no planned
    item has the old key as its own."""
    moves = [(item.key, item.earlier_key) for item in items if item.earlier_key and item.earlier_key != item.key]
    if not moves:
        return
    planned = {item.key for item in items}
    known = {row["item_key"] for row in catalog.rows("SELECT item_key FROM stage_items WHERE stage = ?", (stage,))}
    with catalog.transaction():
        for key, old in moves:
            if key not in known and old in known and old not in planned:
                catalog.execute("UPDATE stage_items SET item_key = ? WHERE stage = ? AND item_key = ?", (key, stage, old))
                known.discard(old)
                known.add(key)


def _adopt_earlier(items: list[WorkItem], catalog: Catalog, stage: str) -> list[WorkItem]:
    """Items done under the fingerprint an earlier release computed (``WorkItem.earlier``) are
    up to date: nothing is redone on upgrade. They keep that recorded fingerprint, unless the
    earlier recipe made the very same output (``earlier_same``): then the record takes the new
    one (and the stage's ``inputs_hash`` with it, so a stage up to date stays so), and what only
    the earlier recipe held, such as where the project was, no longer counts."""
    done = done_items(catalog, stage) if any(item.earlier for item in items) else {}
    # key -> the earlier fingerprint it is recorded under
    adopted = {item.key: item.earlier for item in items
               if item.earlier and item.earlier != item.fingerprint and done.get(item.key) == item.earlier}
    same = [item for item in items if item.key in adopted and item.earlier_same]
    kept = dict(adopted)
    for item in same:
        del kept[item.key]
    if same:
        previous = catalog.one("SELECT inputs_hash FROM stage_runs WHERE stage = ?", (stage,))
        with catalog.transaction():
            for item in same:
                catalog.execute("UPDATE stage_items SET fingerprint = ? WHERE stage = ? AND item_key = ?",
                                (item.fingerprint, stage, item.key))
            if previous is not None and previous["inputs_hash"] == _inputs_hash(items, adopted):
                catalog.execute("UPDATE stage_runs SET inputs_hash = ? WHERE stage = ?", (_inputs_hash(items, kept), stage))
    return [replace(item, fingerprint=kept[item.key]) if item.key in kept else item for item in items]


def _inputs_hash(items: list[WorkItem], instead: dict[str, str] | None = None) -> str:
    """What a stage's items are made from, as one hash (``instead``: other fingerprints by key)."""
    instead = instead or {}
    return digest(sorted((item.key, instead.get(item.key, item.fingerprint)) for item in items))


def _lost_outputs(stage: Stage, ctx: StageContext, row: Any) -> bool:
    """Whether a file the item recorded as its own is gone (the user deleted it)."""
    return any(not stage.output_present(ctx, rel) for rel in json.loads(row["outputs"] or "[]"))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, AnimloraError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def item_scope(root: Path, allowed: tuple[Path, ...], journal: Path, item: WorkItem) -> Any:
    """Where one item's writes may land, and their journal (module level: picklable)."""
    return confined_writes(root, allowed, journal, item.key)


class Runner:
    """Runs a list of stages against one workspace."""

    def __init__(
        self,
        workspace: Workspace,
        loaded: LoadedSettings,
        *,
        force: bool = False,
        input_path: Path | None = None,
        progress: Any = None,
        gpu_check: Any = None,
    ) -> None:
        self.workspace = workspace
        self.loaded = loaded
        self.settings = loaded.settings
        self.force = force
        self.input_path = input_path
        self.progress = progress  # a rich Progress, or None
        self.gpu_check = gpu_check  # Ray: which stages ask for GPUs (executors.GpuCheck)
        self._sessions = contextlib.ExitStack()
        self._ray_started = False

    def job_for(self, stage: Stage) -> StageJob:
        return StageJob(
            settings=self.settings,
            output_dir=self.workspace.stage_path(stage.name),
            input_path=self.input_path,
            workspace_root=self.workspace.root,
            standalone=self.workspace.standalone,
            force=self.force,
        )

    def executor_for(self, stage: Stage) -> str:
        """``runner.executors[stage]`` when set, else ``runner.executor``."""
        runner = self.settings.runner
        return runner.executors.get(stage.name, runner.executor)

    def run(self, stages: Sequence[Stage]) -> list[RunSummary]:
        from animlora.records.folders import FOLDERS

        known = [*FOLDERS, *(s.name for s in stages if s.name not in FOLDERS)]
        unknown = sorted(set(self.settings.runner.executors) - set(known))
        if unknown:
            raise ConfigError(f"runner.executors: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(known)}")
        jobs = [self.job_for(stage) for stage in stages]
        # Validate before anything is written: a bad input fails here with one line.
        for stage, job in zip(stages, jobs, strict=True):
            stage.check_inputs(job)
        summaries = []
        self._ray_started = False
        # what an executor keeps for the whole run (Ray: started at the first stage with work)
        with self.workspace.lock(), contextlib.ExitStack() as self._sessions:
            catalog = self.workspace.open_catalog()
            try:
                restored, _ = keep_times(catalog, self.workspace)
                if restored:
                    log.warning("%d files had lost their times (a copy that does not keep them): put back, "
                                "their content unchanged", restored)
                for stage, job in zip(stages, jobs, strict=True):
                    summaries.append(self.run_stage(stage, job, catalog))
                    if not summaries[-1].up_to_date:
                        keep_times(catalog, self.workspace, [stage.name])  # what it wrote
            except Exception as exc:
                if disk_full(exc) and not isinstance(exc, DiskFullError):  # SQLite's "database or disk is full"
                    raise disk_full_error(self.workspace.root, exc) from exc
                raise
            finally:
                catalog.close()
        return summaries

    # -- one stage --------------------------------------------------------------------
    def run_stage(self, stage: Stage, job: StageJob, catalog: Catalog) -> RunSummary:
        started = time.monotonic()
        ctx = StageContext(job=job, workspace=self.workspace, catalog=catalog, log=log, force=self.force)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        clean_temp_files(job.output_dir)
        self._sweep_unrecorded(stage, ctx)

        # 1. plan
        items = stage.plan(ctx)
        keys = [item.key for item in items]
        if len(set(keys)) != len(keys):
            raise StageError(f"stage {stage.name}: two work items share a key (a bug; please report)")
        _rekey_earlier(items, catalog, stage.name)
        items = _adopt_earlier(items, catalog, stage.name)

        # 2. stage key: changed settings (or upstream) make every earlier result stale
        settings_hash = stage.settings_hash(self.settings)
        stage_key = stage_key_of(stage, settings_hash, catalog)
        inputs_hash = _inputs_hash(items)
        previous = catalog.one("SELECT * FROM stage_runs WHERE stage = ?", (stage.name,))
        known = {row["item_key"]: row for row in catalog.rows("SELECT * FROM stage_items WHERE stage = ?", (stage.name,))}
        stale_all = self.force or previous is None or previous["stage_key"] != stage_key
        if not stale_all:
            why = stage.outdated(ctx)
            if why:
                log.warning("%s: %s", stage.name, why)
                stale_all = True

        # 3. forget what is stale or gone
        wanted = {item.key: item for item in items}
        lost = []
        for key, row in known.items():
            item = wanted.get(key)
            if item is not None and item.held:
                continue  # its input is out of reach: what was made from it stays
            if stale_all or item is None or row["fingerprint"] != item.fingerprint or row["stage_key"] != stage_key:
                self._forget(stage, ctx, key, row)
            elif row["status"] == "done" and stage.remake_lost_outputs and _lost_outputs(stage, ctx, row):
                lost.append(item.label or key)
                self._forget(stage, ctx, key, row)  # a file it made was deleted: made again
        if lost:
            log.warning("%s: %d item(s) made again, files they had written were deleted: %s", stage.name, len(lost),
                        ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""))
        known = {
            row["item_key"]: row
            for row in catalog.rows("SELECT * FROM stage_items WHERE stage = ?", (stage.name,))
        }
        todo = [item for item in items
                if not item.held and (known.get(item.key) is None or known[item.key]["status"] != "done")]
        skipped = len(items) - len(todo)

        if (
            not todo
            and previous is not None
            and previous["status"] == "done"
            and previous["stage_key"] == stage_key
            and previous["inputs_hash"] == inputs_hash
        ):
            log.info("%s: up to date (%d items)", stage.name, len(items))
            return RunSummary(stage.name, len(items), len(items), len(items), (), 0.0, up_to_date=True,
                              note=stage.plan_note)

        with catalog.transaction():
            catalog.upsert(
                "stage_runs",
                [
                    {
                        "stage": stage.name,
                        "stage_key": stage_key,
                        "settings_hash": settings_hash,
                        "inputs_hash": inputs_hash,
                        "code_version": f"{__version__}/{stage.version}",
                        "status": "running",
                        "started_at": now(),
                        "finished_at": None,
                        "items_total": len(items),
                        "items_done": skipped,
                        "items_failed": 0,
                        "seconds": None,
                    }
                ],
            )

        # 4. process
        self._process_items(stage, ctx, todo, stage_key)
        failed_before = [
            (row["item_key"], row["error"])
            for row in catalog.rows("SELECT * FROM stage_items WHERE stage = ? AND status = 'failed'", (stage.name,))
        ]
        labels = {item.key: item.label or item.key for item in items}
        all_failures = tuple((labels.get(k, k), e) for k, e in failed_before)
        done = len(items) - len(all_failures)

        # 5. finish + manifest
        summary = RunSummary(
            stage.name, len(items), done, skipped, all_failures, time.monotonic() - started, note=stage.plan_note
        )
        report = stage.finish(ctx, summary)
        stage.ran(ctx)
        with catalog.transaction():
            catalog.execute(
                "UPDATE stage_runs SET status = 'done', finished_at = ?, items_done = ?, items_failed = ?, "
                "seconds = ? WHERE stage = ?",
                (now(), done, len(all_failures), summary.seconds, stage.name),
            )
        self._write_manifest(stage, stage_key, settings_hash, inputs_hash, summary, report)
        self._sweep_unrecorded(stage, ctx)  # what failed items wrote before they failed
        return summary

    def journal_path(self, stage: Stage) -> Path:
        return self.workspace.state_dir / "journal" / f"{stage.name}.txt"

    def _sweep_unrecorded(self, stage: Stage, ctx: StageContext) -> None:
        """Remove files an item wrote but never recorded (killed before its commit, or
        failed): the journal lists every write of ``process``; what no item row records is
        orphaned. Files of other origin are never listed, so never touched."""
        journal = self.journal_path(stage)
        if not journal.is_file():
            return
        root = str(ctx.output_dir.resolve())
        rows = ctx.catalog.rows("SELECT item_key, status, outputs FROM stage_items WHERE stage = ?", (stage.name,))
        recorded = {f"{root}/{rel}" for row in rows for rel in json.loads(row["outputs"] or "[]")}
        done = {row["item_key"] for row in rows if row["status"] == "done"}
        removed = sweep_journal(journal, ctx.output_dir, recorded, done, spare=(self.workspace.state_dir,))
        if removed:
            log.info("%s: removed %d unrecorded files of an interrupted or failed item", stage.name, removed)

    def _process_items(self, stage: Stage, ctx: StageContext, todo: list[WorkItem], stage_key: str) -> None:
        task = None
        if self.progress is not None and todo:
            task = self.progress.add_task(f"{stage.name}", total=len(todo))

        def item_progress(item: WorkItem):
            def report(done: int, total: int) -> None:
                if task is not None:
                    self.progress.update(task, description=f"{stage.name} {item.label or item.key} {done}/{total}")

            return report

        settings = self.settings.runner
        executor = self.executor_for(stage)
        # writes of process() stay in the stage's folder (or the state folder) and are journaled
        scope = partial(item_scope, self.workspace.root, (ctx.output_dir, self.workspace.state_dir),
                        self.journal_path(stage))
        if executor == "ray" or (executor == "process" and settings.workers > 1):
            todo = sorted(todo, key=stage.cost, reverse=True)  # stable: equal costs keep the plan's order
        if executor == "ray" and todo:
            if not self._ray_started:
                self._sessions.enter_context(ray_session(settings.ray_address, settings.workers))
                self._ray_started = True
            outcomes = run_ray(stage, ctx.job, todo, settings.workers, scope, retries=settings.ray_retries,
                               gpus_per_worker=settings.ray_gpus, gpu_check=self.gpu_check)
        elif executor == "process" and settings.workers > 1 and len(todo) > 1:
            outcomes = run_pool(stage, ctx.job, todo, settings.workers, scope)
        else:
            outcomes = run_serial(stage, ctx.job, todo, item_progress, scope)

        try:
            self._commit_outcomes(stage, ctx, outcomes, stage_key, task)
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:  # a pool stops taking items (those in flight finish, unrecorded)
                close()

    def _commit_outcomes(self, stage: Stage, ctx: StageContext, outcomes: Iterable[tuple[WorkItem, Any]],
                         stage_key: str, task: Any) -> None:
        for item, outcome in outcomes:
            if isinstance(outcome, BaseException) and disk_full(outcome):
                # every later item would fail the same way: the run stops, this item is left
                # to do (not failed) and what is done stays recorded
                if isinstance(outcome, DiskFullError):
                    raise outcome
                raise disk_full_error(ctx.output_dir, outcome) from outcome
            if isinstance(outcome, BaseException):
                error = _error_text(outcome)
                log.error("%s: %s failed: %s", stage.name, item.label or item.key, error)
                if not isinstance(outcome, AnimloraError):
                    log.debug("".join(traceback.format_exception(outcome)))
                with ctx.catalog.transaction():
                    stage.fail(ctx, item, error)
                    self._mark(ctx.catalog, stage, item, stage_key, "failed", error, ())
            else:
                with ctx.catalog.transaction():
                    stage.commit(ctx, item, outcome)
                    self._mark(ctx.catalog, stage, item, stage_key, "done", None, outcome.files)
            if task is not None:
                self.progress.advance(task)

    @staticmethod
    def _mark(catalog: Catalog, stage: Stage, item: WorkItem, stage_key: str, status: str,
              error: str | None, files: tuple[str, ...]) -> None:
        catalog.upsert(
            "stage_items",
            [
                {
                    "stage": stage.name,
                    "item_key": item.key,
                    "stage_key": stage_key,
                    "fingerprint": item.fingerprint,
                    "status": status,
                    "error": error,
                    "outputs": list(files),
                    "finished_at": now(),
                }
            ],
        )

    def _forget(self, stage: Stage, ctx: StageContext, key: str, row: Any) -> None:
        """Remove a stale item: its files (only those the stage recorded) and its rows. Last
        written first: a kill in between leaves no index (a dataset's metadata.json) naming
        files already gone, which the next plan would take for files a person deleted."""
        for rel in reversed(json.loads(row["outputs"] or "[]")):
            path = ctx.output_dir / rel
            if path.is_file() and path.resolve().is_relative_to(ctx.output_dir.resolve()):
                path.unlink()
                remove_empty_parents(path, ctx.output_dir)
        with ctx.catalog.transaction():
            stage.forget(ctx, key)
            ctx.catalog.execute("DELETE FROM stage_items WHERE stage = ? AND item_key = ?", (stage.name, key))

    def _write_manifest(self, stage: Stage, stage_key: str, settings_hash: str, inputs_hash: str,
                        summary: RunSummary, report: dict[str, Any]) -> None:
        section = getattr(self.settings, stage.name, None)
        atomic_write_json(
            self.workspace.manifest_path(stage.name),
            {
                "stage": stage.name,
                "stage_key": stage_key,
                "settings_hash": settings_hash,
                "inputs_hash": inputs_hash,
                "code_version": {"animlora": __version__, "stage": stage.version},
                "settings": section.model_dump(mode="json") if section is not None else {},
                "items": {
                    "total": summary.items_total,
                    "done": summary.items_done,
                    "skipped": summary.items_skipped,
                    "failed": len(summary.failures),
                },
                "failures": [{"item": k, "error": e} for k, e in summary.failures],
                "seconds": round(summary.seconds, 3),
                "finished_at": now(),
                "report": report,
            },
        )
