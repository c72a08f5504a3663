"""Curation: what builds a training dataset — the sources of a character's instances,
selection, images, trainer formats, report (the dataset stage, ``stages/dataset.py``, calls it)."""
