"""Each stage's folder in a project, named once (docs/contract.md).

The stage registry (``animlora.stages.STAGES``) and every module that reads another stage's
files look the folder up here, so the storage and domain layers need not import the stages.
"""

from __future__ import annotations

# stage name -> folder in a project, in pipeline order
FOLDERS: dict[str, str] = {
    "extract": "frames",
    "segment": "segmentation",
    "prefilter": "filtered",
    "inpaint": "plates",
    "deocclude": "deoccluded",
    "embed": "embeddings",
    "cluster": "clustered",
    "enhance": "enhanced",
    "caption": "captions",
    "dataset": "training_data",
    "train": "runs",
    "evaluate": "evaluation",
}


def stage_folder(stage: str) -> str:
    """The project folder of ``stage``; an unknown name lists the stages."""
    folder = FOLDERS.get(stage)
    if folder is None:
        from animlora.errors import StageError

        raise StageError(f"unknown stage {stage!r}; stages: {', '.join(FOLDERS)}")
    return folder
