"""Stages for the Ray executor tests; a module of its own so Ray workers can import it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from animlora.pipeline.stage import ItemOutput, StageJob, WorkItem
from animlora.stages.segment import SegmentStage


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
