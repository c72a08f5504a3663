"""Stage protocol, runner and executors."""

from __future__ import annotations

from animlora.pipeline.stage import ItemOutput, Stage, StageContext, StageJob, WorkItem

__all__ = ["ItemOutput", "Stage", "StageContext", "StageJob", "WorkItem"]
