"""Each stage's folder in a project, named once (docs/contract.md).

The stage registry (``animlora.stages.STAGES``), the runner (through
:meth:`animlora.workspace.Workspace.stage_path`) and every module that reads another stage's
files look the folder up here, so the storage and domain layers need not import the stages.

A folder is named as its stage (``segment`` -> ``segmentation/``, ``inpaint`` ->
``inpainting/``, ``deocclude`` -> ``deocclusion/``). Projects made by earlier releases keep
the folders they have (``plates/``, ``deoccluded/``): given the project folder,
:func:`stage_folder` answers the earlier name wherever that folder exists, so an old project
re-runs with nothing redone and nothing moved.
"""

from __future__ import annotations

from pathlib import Path

# stage name -> folder in a project, in pipeline order
FOLDERS: dict[str, str] = {
    "extract": "frames",
    "segment": "segmentation",
    "prefilter": "filtered",
    "inpaint": "inpainting",
    "embed": "embeddings",
    "cluster": "clustered",
    "deocclude": "deocclusion",
    "enhance": "enhancement",
    "caption": "captions",
    "dataset": "training_data",
    "train": "runs",
    "evaluate": "evaluation",
}

# stage name -> the folder earlier releases made for it; a project that has it keeps it
EARLIER: dict[str, str] = {
    "inpaint": "plates",
    "deocclude": "deoccluded",
}


def stage_folder(stage: str, root: Path | None = None) -> str:
    """The folder of ``stage`` in the project at ``root`` (without ``root``: in a new
    project); an unknown name lists the stages."""
    folder = FOLDERS.get(stage)
    if folder is None:
        from animlora.errors import StageError

        raise StageError(f"unknown stage {stage!r}; stages: {', '.join(FOLDERS)}")
    earlier = EARLIER.get(stage)
    if root is not None and earlier is not None and (Path(root) / earlier).is_dir():
        return earlier
    return folder
