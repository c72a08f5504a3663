"""Stages for the Ray executor tests; a module of its own so Ray workers can import it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from animlora.pipeline.stage import ItemOutput, Stage, StageJob, WorkItem
from animlora.stages.segment import SegmentStage

TESTS = Path(__file__).resolve().parent


def worker_pythonpath() -> str:
    """PYTHONPATH for Ray's workers: the package source and this folder (where these stages live)."""
    return os.pathsep.join([str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])


class KilledOnceSegment(SegmentStage):
    """The real segment stage, whose worker is killed (SIGKILL) once, in the middle of the first
    shot it is given: after the shot's files are written, before its result is returned."""

    def process(self, job: StageJob, item: WorkItem, progress) -> ItemOutput:
        output = super().process(job, item, progress)
        marker = Path(job.workspace_root) / "killed-once"
        try:
            marker.open("x").close()
        except FileExistsError:
            return output
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class GpuProbe(Stage):
    """A stage that holds "a model" (it has a ``setup_worker`` hook, so Ray runs it on actors):
    each item's output says which process ran it and which GPUs Ray gave that process."""

    name = "gpu_probe"
    folder = "gpu_probe"

    def plan(self, ctx) -> list[WorkItem]:
        return []

    def setup_worker(self, job: StageJob) -> None:
        return None

    def process(self, job: StageJob, item: WorkItem, progress) -> ItemOutput:
        import ray

        return ItemOutput(data={"pid": os.getpid(), "gpus": [int(g) for g in ray.get_gpu_ids()]})
