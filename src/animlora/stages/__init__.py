"""The stages, in pipeline order. Modules are imported only when a stage is used."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from animlora.errors import StageError
from animlora.records.folders import FOLDERS

if TYPE_CHECKING:
    from animlora.pipeline.stage import Stage

# name -> "module:Class". Order is pipeline order; `animlora run` runs every stage listed.
# train/evaluate plan nothing (and print the train command) while train.base_model is empty.
_CLASSES: dict[str, str] = {
    "extract": "animlora.stages.extract:ExtractStage",
    "segment": "animlora.stages.segment:SegmentStage",
    "prefilter": "animlora.stages.prefilter:PrefilterStage",
    "inpaint": "animlora.stages.inpaint:InpaintStage",
    "embed": "animlora.stages.embed:EmbedStage",
    "cluster": "animlora.stages.cluster:ClusterStage",
    # after cluster: it never paints out a part of the target's own character, which it knows
    # from the cluster's members (before cluster, a first run and a re-run planned differently)
    "deocclude": "animlora.stages.deocclude:DeoccludeStage",
    "enhance": "animlora.stages.enhance:EnhanceStage",
    "caption": "animlora.stages.caption:CaptionStage",
    "dataset": "animlora.stages.dataset:DatasetStage",
    "train": "animlora.stages.train:TrainStage",
    "evaluate": "animlora.stages.evaluate:EvaluateStage",
}
# name -> (folder in a project, "module:Class"); the folders are named in records/folders.py,
# so listing folders imports no stage.
STAGES: dict[str, tuple[str, str]] = {name: (FOLDERS[name], target) for name, target in _CLASSES.items()}


def stage_names() -> list[str]:
    return list(STAGES)


def get_stage(name: str) -> Stage:
    entry = STAGES.get(name)
    if entry is None:
        raise StageError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    module, _, cls = entry[1].partition(":")
    stage = getattr(import_module(module), cls)()
    # the runner writes where records/folders.py says (a project of an earlier release keeps
    # its old folder: stage_folder(name, root)); the class names the folder of new projects
    assert stage.folder == entry[0], f"{name}: folder differs from the registry"
    return stage


def select_stages(start: str | None = None, stop: str | None = None) -> list[Stage]:
    """Stages from ``start`` to ``stop`` inclusive (names checked)."""
    names = stage_names()
    for given in (start, stop):
        if given is not None and given not in names:
            raise StageError(f"unknown stage {given!r}; stages: {', '.join(names)}")
    first = names.index(start) if start else 0
    last = names.index(stop) if stop else len(names) - 1
    if first > last:
        raise StageError(f"--from {start} comes after --to {stop}")
    return [get_stage(name) for name in names[first : last + 1]]
