"""Executors run ``Stage.process`` over items: in this process, a local worker pool, or on Ray.

All yield ``(item, output | exception)`` in completion order and keep at most a bounded
number of items in flight, so memory stays flat however many items a stage has.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from animlora.errors import MissingDependencyError, StageError
from animlora.pipeline.stage import ItemOutput, Progress, Stage, StageJob, WorkItem

log = logging.getLogger("animlora")

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
    try:
        stage.setup_worker(job)
    except Exception as exc:  # noqa: BLE001 - reported by the items
        log.debug("%s: worker setup failed: %s", stage.name, exc)


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


# -- Ray -----------------------------------------------------------------------------------
# Items become Ray tasks, or calls on a pool of actors where the stage holds a model (each
# actor runs ``Stage.setup_worker`` once, as a pool worker does). Only results travel back:
# the driver (this process) commits them, so the catalog keeps its single writer.

_CRASHES = ("WorkerCrashedError", "ActorDiedError", "RayActorError", "ActorUnavailableError",
            "NodeDiedError", "OwnerDiedError", "ObjectLostError", "LocalRayletDiedError")
#: (stage, settings, GPUs in the cluster) -> whether the stage's items run on a GPU; given by the
#: command layer, which knows the backends (cli.common.stage_wants_gpu)
GpuCheck = Callable[[Stage, Any, float], bool]


class ProjectNotVisibleError(StageError):
    """A Ray worker cannot see the project folder: it is not on storage shared by the cluster."""


def uses_actors(stage: Stage, gpu: bool) -> bool:
    """Actors where a model is held (the stage has a per-worker setup, or runs on a GPU)."""
    return gpu or type(stage).setup_worker is not Stage.setup_worker


def _check_visible(job: StageJob) -> None:
    if not job.output_dir.is_dir():
        import socket

        raise ProjectNotVisibleError(
            f"a Ray worker on {socket.gethostname()} cannot see the project folder {job.workspace_root}: "
            "on a cluster the project must be on storage every node mounts at the same path (NFS or similar)")


def _ray_item(stage: Stage, job: StageJob, item: WorkItem, scope: Scope) -> ItemOutput:
    """One item in a Ray task (module level, so workers import it rather than unpickle code)."""
    _check_visible(job)
    return _process_one(stage, job, item, scope)


class _StageActor:
    """One Ray actor: the stage's model loaded once (``setup_worker``), then item after item."""

    def __init__(self, stage: Stage, job: StageJob) -> None:
        self.stage, self.job = stage, job
        if job.output_dir.is_dir():  # else every item reports it (ProjectNotVisibleError)
            _setup_worker(stage, job)

    def process(self, item: WorkItem, scope: Scope) -> ItemOutput:
        return _ray_item(self.stage, self.job, item, scope)

    def pid(self) -> int:
        import os

        return os.getpid()


def actors_fit(node_amounts: Iterable[float], per_actor: float) -> int:
    """How many actors asking ``per_actor`` GPUs (or CPUs) each Ray places at once on nodes with
    these amounts: a share below one GPU comes from a single GPU (0.4 puts two on a GPU, so four
    on two GPUs, not five), a larger ask takes that many whole units of one node."""
    per_gpu = math.floor(1 / per_actor + 1e-6) if per_actor < 1 else 0
    return sum(math.floor(n + 1e-6) * per_gpu if per_gpu else math.floor(n / per_actor + 1e-6)
               for n in node_amounts)


def _unwrap(exc: BaseException) -> BaseException:
    """A task's own exception (Ray wraps it in a RayTaskError that keeps it as ``cause``)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _crashed(exc: BaseException) -> bool:
    return any(type(exc).__name__ == name or name in {t.__name__ for t in type(exc).__mro__} for name in _CRASHES)


@contextmanager
def ray_session(address: str, num_cpus: int) -> Iterator[None]:
    """Ray for one run: join ``address`` (a cluster), or start a local Ray that stops with the
    run. A Ray already started in this process (tests, notebooks) is used as it is."""
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("ray", "ray", "runner.executor 'ray'")
    import ray

    if ray.is_initialized():
        yield
        return
    logging.getLogger("ray").setLevel(logging.WARNING)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    else:
        # local workers import this very animlora (a source checkout too), as the process pool's do
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join([package_root, *(p for p in sys.path if p and p != package_root)])
        kwargs |= {"num_cpus": num_cpus, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise StageError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def run_ray(stage: Stage, job: StageJob, items: Iterable[WorkItem], workers: int, scope: Scope = _no_scope,
            *, retries: int = 3, gpus_per_worker: float = 1.0, gpu_check: GpuCheck | None = None,
            ) -> Iterator[Outcome]:
    """Items on Ray (inside :func:`ray_session`), yielded in completion order.

    ``2 * workers`` tasks in flight, or ``workers`` actors with one call each, but no more actors
    than the cluster holds (GPU actors at ``gpus_per_worker`` each, CPU actors at one CPU; see
    :func:`actors_fit`; none is a StageError), since an actor Ray cannot place waits forever and so
    would the items sent to it. A worker that dies mid-item (killed, out of memory, node lost)
    costs that item one attempt: it is sent again (a dead actor is replaced by a new one, which
    loads its model again) up to ``retries`` times, then recorded as failed with the crash. An
    exception the item raises is its result, as with the other executors (not retried)."""
    import ray

    resources = ray.cluster_resources()
    gpu = gpu_check is not None and gpu_check(stage, job.settings, resources.get("GPU", 0.0))
    need = {"num_cpus": 0 if gpu else 1, "num_gpus": gpus_per_worker if gpu else 0}
    stage_ref, job_ref, scope_ref = ray.put(stage), ray.put(job), ray.put(scope)
    actors: list[Any] = []
    if uses_actors(stage, gpu):
        # an actor the cluster cannot hold would wait forever, and the items sent to it with it
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        kind, each = ("GPU", gpus_per_worker) if gpu else ("CPU", 1.0)
        have = resources.get(kind, 0.0)
        fit = actors_fit((n.get(kind, 0.0) for n in nodes), each)
        if fit == 0:
            raise StageError(f"{stage.name}: no node of the Ray cluster has {each:g} {kind} for one actor (the "
                             f"cluster's {kind}s: {have:g})" + (": set runner.ray_gpus, or the stage's device to cpu"
                                                               if gpu else ""))
        count = min(workers, fit)
        if count < workers:
            log.warning(
                "%s: %d of %d %s actors started (runner.workers): the cluster's %ss (%g) hold %d of %g %s each%s",
                stage.name, count, workers, kind, kind, have, fit, each, kind, " (runner.ray_gpus)" if gpu else "")
        # one call at a time per actor: a crash then costs only the item that was running
        actor_cls = ray.remote(_StageActor).options(max_restarts=0, max_task_retries=0, **need)
        actors = [actor_cls.remote(stage, job) for _ in range(count)]
        in_flight = count
    else:
        task = ray.remote(_ray_item).options(max_retries=0, **need)
        in_flight = 2 * workers
    idle = list(range(len(actors)))
    pending: dict[Any, tuple[WorkItem, int, int]] = {}  # ref -> (item, attempt, actor index)
    attempts_left: list[tuple[WorkItem, int]] = []
    iterator = iter(items)

    def submit(item: WorkItem, attempt: int) -> None:
        if actors:
            slot = idle.pop()
            pending[actors[slot].process.remote(item, scope_ref)] = (item, attempt, slot)
        else:
            pending[task.remote(stage_ref, job_ref, item, scope_ref)] = (item, attempt, -1)

    try:
        while True:
            while len(pending) < in_flight:
                if attempts_left:
                    submit(*attempts_left.pop())
                    continue
                item = next(iterator, None)
                if item is None:
                    break
                submit(item, 1)
            if not pending:
                return
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                item, attempt, slot = pending.pop(ref)
                try:
                    output = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the item's outcome
                    error = _unwrap(exc)
                    if isinstance(error, ProjectNotVisibleError):
                        raise StageError(str(error)) from None
                    if _crashed(error):
                        if slot >= 0:  # a fresh actor (its model loaded again) takes the dead one's place
                            ray.kill(actors[slot])
                            actors[slot] = actor_cls.remote(stage, job)
                        if attempt <= retries:
                            log.warning(
                                "%s: a worker died during %s (attempt %d of %d); sending it again",
                                stage.name, item.label or item.key, attempt, retries + 1)
                            attempts_left.append((item, attempt + 1))
                            continue
                        error = StageError(f"the worker died {attempt} times during this item "
                                           f"(last: {type(error).__name__})")
                    yield item, error
                else:
                    yield item, output
                finally:
                    if slot >= 0:
                        idle.append(slot)
    finally:
        for actor in actors:
            ray.kill(actor)


# -- doctor: what every node of a cluster sees -----------------------------------------------
def node_report(folder: str, token_name: str, token: str) -> dict[str, Any]:
    """On one node: its host, animlora and Python, and whether ``folder`` is the driver's: the
    file ``token_name`` the driver wrote there reads back as ``token`` (the same storage, not a
    local folder of the same name), and the node can write beside it."""
    import os
    import socket
    import sys

    from animlora import __version__

    row: dict[str, Any] = {"host": socket.gethostname(), "animlora": __version__,
                           "python": sys.version.split()[0], "sees_project": False, "writable": False}
    root = Path(folder)
    try:
        row["sees_project"] = (root / token_name).read_text(encoding="utf-8") == token
    except OSError as exc:
        row["problem"] = f"cannot read {root / token_name}: {exc.strerror or exc}"
        return row
    if not row["sees_project"]:
        row["problem"] = f"{folder} on this node is another folder (the driver's check file differs)"
        return row
    probe = root / f"{token_name}.{socket.gethostname()}.{os.getpid()}"
    try:
        probe.write_text(token, encoding="utf-8")
        probe.unlink()
        row["writable"] = True
    except OSError as exc:
        row["problem"] = f"cannot write in {folder}: {exc.strerror or exc}"
    return row


def probe_ray_nodes(address: str, folder: Path, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Join the Ray cluster at ``address`` and run :func:`node_report` on every alive node (one
    task pinned to each); a node that does not answer within ``timeout`` seconds says so."""
    import secrets

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    token_name = f".animlora-doctor-{token[:8]}"
    check = folder / token_name
    check.write_text(token, encoding="utf-8")
    try:
        with ray_session(address, 1):
            import ray

            report = ray.remote(num_cpus=0, max_retries=0)(node_report)
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            refs = [report.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(folder), token_name, token) for n in nodes]
            rows = []
            for node, ref in zip(nodes, refs, strict=True):
                resources = node.get("Resources", {})
                base = {"node": node["NodeID"][:12], "address": node.get("NodeManagerAddress", ""),
                        "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0)}
                try:
                    rows.append(base | ray.get(ref, timeout=timeout))
                except Exception as exc:  # noqa: BLE001 - a node that died or hangs is a row, not a crash
                    rows.append(base | {"host": node.get("NodeManagerHostname", "?"), "sees_project": False,
                                        "writable": False, "problem": f"no answer: {type(exc).__name__}: {exc}"[:300]})
            return rows
    finally:
        check.unlink(missing_ok=True)
