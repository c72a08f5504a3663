"""Executors run ``Stage.process`` over items: in this process, or in a local worker pool.

Both yield ``(item, output | exception)`` in completion order and keep at most a bounded
number of items in flight, so memory stays flat however many items a stage has.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext

from animlora.pipeline.stage import ItemOutput, Progress, Stage, StageJob, WorkItem

Outcome = tuple[WorkItem, ItemOutput | BaseException]
# Made around each ``process`` call: where its writes may land (io.files.confined_writes).
# A picklable callable (a functools.partial), so it reaches the pool's workers.
Scope = Callable[[WorkItem], AbstractContextManager[None]]


def _no_scope(item: WorkItem) -> AbstractContextManager[None]:
    return nullcontext()


def _no_progress(done: int, total: int) -> None:
    return None


def run_serial(
    stage: Stage, job: StageJob, items: Iterable[WorkItem], progress: Callable[[WorkItem], Progress],
    scope: Scope = _no_scope,
) -> Iterator[Outcome]:
    for item in items:
        try:
            with scope(item):
                output = stage.process(job, item, progress(item))
        except Exception as exc:  # recorded per item; KeyboardInterrupt still stops the run
            yield item, exc
        else:
            yield item, output


def _process_one(stage: Stage, job: StageJob, item: WorkItem, scope: Scope = _no_scope) -> ItemOutput:
    with scope(item):
        return stage.process(job, item, _no_progress)


def _setup_worker(stage: Stage, job: StageJob) -> None:
    """Pool initializer: the stage's per-worker hook. A failure here is left for the items,
    which meet it again and record it one by one (a failing initializer breaks the pool)."""
    import logging

    try:
        stage.setup_worker(job)
    except Exception as exc:  # noqa: BLE001 - reported by the items
        logging.getLogger("animlora").debug("%s: worker setup failed: %s", stage.name, exc)


def run_pool(stage: Stage, job: StageJob, items: Iterable[WorkItem], workers: int,
             scope: Scope = _no_scope) -> Iterator[Outcome]:
    # spawn, not fork: workers may load torch or onnxruntime, which do not survive fork.
    context = multiprocessing.get_context("spawn")
    pending: dict[Future[ItemOutput], WorkItem] = {}
    iterator = iter(items)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_setup_worker,
                             initargs=(stage, job)) as pool:
        while True:
            while len(pending) < 2 * workers:
                item = next(iterator, None)
                if item is None:
                    break
                pending[pool.submit(_process_one, stage, job, item, scope)] = item
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                item = pending.pop(future)
                exc = future.exception()
                yield item, exc if exc is not None else future.result()
