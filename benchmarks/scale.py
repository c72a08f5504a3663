"""Items/s of the segment and embed stages under the serial, process and Ray executors, and the
driver's own cost per item, on this machine.

    python benchmarks/scale.py [--video PATH] [--workers 2] [--segment-backend classic]
                               [--interval 1.0] [--noop-items 300] [--executors serial,process,ray]

One process, one project (made in a temp folder from ``--video``, default the bundled clip;
``extract.mode interval`` every ``--interval`` s, so the item counts are known), then:

1. extract → segment → prefilter → embed once, serially (set-up, not timed);
2. per executor: ``segment`` again (``--force``) and ``embed`` again, timed by the runner
   (plan + items + commits + finish). ``one-core`` is the serial executor with this process
   (every thread of it) kept to one core: the ideal for W workers is W times its items/s.
   Per-core efficiency = (items/s with W workers) / (W × one-core items/s); and the speed-up
   over the serial executor on all cores (which itself uses more than one core: OpenCV's
   threads, segment's look-ahead shot);
3. the driver overhead per item: a stage whose items do nothing, ``--noop-items`` of them and
   then twice as many, per executor: (t(2N) - t(N)) / N = what the driver spends per item (plan, dispatch, result
   transfer, the catalog commit of the item and its "done" mark). Its inverse is the most
   items/s (catalog commits/s) one driver sustains, whatever the cluster;
4. Ray's start-up and shutdown (a local Ray), once.

Ray runs inside one session for all its measurements (started once, as `animlora run` does).
On a machine shared with other work the numbers move between runs; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from animlora.pipeline.stage import ItemOutput, Stage, StageContext, StageJob, WorkItem, digest  # noqa: E402
from animlora.records.folders import FOLDERS  # noqa: E402

# every stage's folder is named in records/folders.py; the benchmark's own stage gets one here
FOLDERS.setdefault("noop", "noop")


class NoopStage(Stage):
    """Items that do nothing: what remains is the executor's and the driver's cost."""

    name: ClassVar[str] = "noop"
    folder: ClassVar[str] = "noop"
    count: ClassVar[int] = 300

    def settings_hash(self, settings: Any) -> str:
        return digest("noop")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(f"n{i:05d}", digest(i), i) for i in range(self.count)]

    def process(self, job: StageJob, item: WorkItem, progress: Any) -> ItemOutput:
        return ItemOutput(data=item.payload)


@contextmanager
def one_core() -> Iterator[None]:
    """Every thread of this process (and those it starts) on one core, then back."""
    before = os.sched_getaffinity(0)
    core = {min(before)}

    def pin(mask: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            with suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), mask)

    pin(core)
    try:
        yield
    finally:
        pin(before)


def runner_for(root: Path, executor: str, workers: int, extra: dict[str, Any], force: bool = True):
    from animlora.config import load_settings
    from animlora.pipeline.runner import Runner
    from animlora.workspace import Workspace

    loaded = load_settings(root, overrides={**extra, "runner": {"executor": executor, "workers": workers}})
    return Runner(Workspace(root), loaded, force=force)


def timed(root: Path, stage: Stage, executor: str, workers: int, extra: dict[str, Any]) -> dict[str, Any]:
    if stage.name == "embed":  # embed keeps vectors by content: empty its cache, so it computes them
        import sqlite3

        with sqlite3.connect(root / "catalog.sqlite") as db:
            db.execute("DELETE FROM embeddings")
    summary = runner_for(root, executor, workers, extra).run([stage])[0]
    return {"items": summary.items_total, "failed": len(summary.failures), "seconds": round(summary.seconds, 3),
            "items_per_s": round(summary.items_total / summary.seconds, 3) if summary.seconds else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--segment-backend", default="classic")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--noop-items", type=int, default=300)
    parser.add_argument("--executors", default="one-core,serial,process,ray")
    parser.add_argument("--keep", type=Path, default=None, help="make the project here and keep it")
    args = parser.parse_args()

    from animlora.cli.project import create_project
    from animlora.data import sample_clip
    from animlora.pipeline.executors import ray_session
    from animlora.stages import get_stage

    executors = args.executors.split(",")
    video = (args.video or sample_clip()).resolve()
    work = args.keep or Path(tempfile.mkdtemp(prefix="animlora-scale-"))
    extra = {"segment": {"backend": args.segment_backend},
             "extract": {"mode": "interval", "interval_seconds": args.interval}}
    root = create_project(work / "p", "scale", [video], "3d") if not (work / "p" / "project.yaml").exists() else work / "p"
    results: dict[str, Any] = {"video": str(video), "workers": args.workers, "segment_backend": args.segment_backend,
                               "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    try:
        # 1. set-up
        t = time.monotonic()
        runner_for(root, "serial", 1, extra, force=False).run(
            [get_stage(s) for s in ("extract", "segment", "prefilter", "embed")])
        results["setup_seconds"] = round(time.monotonic() - t, 1)
        NoopStage.count = args.noop_items
        # 4. Ray start-up (and one session for every Ray measurement below)
        session = None
        if "ray" in executors:
            t = time.monotonic()
            session = ray_session("", args.workers)
            session.__enter__()
            results["ray_start_seconds"] = round(time.monotonic() - t, 2)
        try:
            for executor in executors:
                if executor == "one-core":
                    with one_core():
                        results[executor] = {stage: timed(root, get_stage(stage), "serial", 1, extra)
                                             for stage in ("segment", "embed")}
                    continue
                workers = 1 if executor == "serial" else args.workers
                row = {stage: timed(root, get_stage(stage), executor, workers, extra) for stage in ("segment", "embed")}
                # N items, then 2N: the difference is the cost of N more items without the
                # executor's start-up (pool processes, Ray workers)
                NoopStage.count = args.noop_items
                row["noop"] = timed(root, NoopStage(), executor, workers, extra)
                NoopStage.count = 2 * args.noop_items
                row["noop_2x"] = timed(root, NoopStage(), executor, workers, extra)
                extra_seconds = row["noop_2x"]["seconds"] - row["noop"]["seconds"]
                row["driver_ms_per_item"] = round(1000 * extra_seconds / args.noop_items, 2)
                results[executor] = row
        finally:
            if session is not None:
                t = time.monotonic()
                session.__exit__(None, None, None)
                results["ray_stop_seconds"] = round(time.monotonic() - t, 2)
        one, serial = results.get("one-core", {}), results.get("serial", {})
        for executor in executors:
            if executor in ("one-core", "serial"):
                continue
            for stage in ("segment", "embed"):
                rate = results[executor][stage]["items_per_s"]
                if one and one[stage]["items_per_s"] and rate:
                    results[executor][stage]["per_core_efficiency"] = round(
                        rate / (args.workers * one[stage]["items_per_s"]), 2)
                if serial and serial[stage]["items_per_s"] and rate:
                    results[executor][stage]["speedup_vs_serial"] = round(rate / serial[stage]["items_per_s"], 2)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
