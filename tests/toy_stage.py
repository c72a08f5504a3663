"""A small real stage for runner tests: upper-cases text files from the input folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import ClassVar

from animlora.errors import BadInputError
from animlora.io.files import atomic_path, atomic_write_text
from animlora.pipeline.stage import ItemOutput, Stage, StageContext, StageJob, WorkItem, digest


class ToyStage(Stage):
    name: ClassVar[str] = "toy"
    folder: ClassVar[str] = "toy"

    def settings_hash(self, settings):
        return digest(self.version, settings.project.seed)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        assert ctx.job.input_path is not None
        files = sorted(ctx.job.input_path.glob("*.txt"))
        return [WorkItem(f.stem, digest(f.read_bytes()), str(f), label=f.name) for f in files]

    def process(self, job: StageJob, item: WorkItem, progress) -> ItemOutput:
        text = Path(item.payload).read_text()
        if "BAD" in text:
            raise BadInputError(item.payload, "contains BAD")
        if os.environ.get("TOY_INTERRUPT_ON") == item.key:
            raise KeyboardInterrupt
        rel = f"{item.key}.out"
        if os.environ.get("TOY_DISK_FULL_ON") == item.key:  # the write fails as on a full disk
            with atomic_path(job.output_dir / rel) as tmp:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        atomic_write_text(job.output_dir / rel, text.upper())
        return ItemOutput(files=(rel,), data=len(text))

    def commit(self, ctx: StageContext, item: WorkItem, output: ItemOutput) -> None:
        ctx.catalog.set_meta(f"toy:{item.key}", str(output.data))

    def forget(self, ctx: StageContext, item_key: str) -> None:
        ctx.catalog.execute("DELETE FROM meta WHERE key = ?", (f"toy:{item_key}",))

    def finish(self, ctx: StageContext, summary) -> dict:
        atomic_write_text(ctx.output_dir / "report.txt", f"{summary.items_done}/{summary.items_total}\n")
        return {"done": summary.items_done}


class ModelToyStage(ToyStage):
    """The toy stage with a "model": each load appends the loading process's pid to
    ``<input>/loads.log``, so a test counts loads per process."""

    name: ClassVar[str] = "toy"

    @staticmethod
    def _model(job: StageJob) -> str:
        from animlora.backends.registry import held

        def load() -> str:
            assert job.input_path is not None
            with open(job.input_path / "loads.log", "a") as log:
                log.write(f"{os.getpid()}\n")
            return "upper"

        return held("toy", str(job.input_path), load)

    def setup_worker(self, job: StageJob) -> None:
        self._model(job)

    def process(self, job: StageJob, item: WorkItem, progress) -> ItemOutput:
        assert self._model(job) == "upper"
        return super().process(job, item, progress)



class CostToyStage(ToyStage):
    """The toy stage whose items cost their text's length."""

    def cost(self, item: WorkItem) -> float:
        return float(Path(item.payload).stat().st_size)
