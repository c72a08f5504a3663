"""Records: what stages hand each other through the catalog, one module per stage.

A records module owns its stage's tables — the migration that makes them, the row type
(a frozen dataclass), the writers its stage calls and the readers everyone else calls — so
the SQL of a table lives in one file and a reader never spells another stage's columns.
The stage folders are named once, in the stage registry (``animlora.stages.STAGES``).

- :mod:`animlora.records.runs`       the runner's ``stage_runs`` / ``stage_items`` (status, resume)
- :mod:`animlora.records.deocclude`  ``deocclude_fills``: the filled box of each occluded instance
- :mod:`animlora.records.enhance`    ``enhanced_crops``: each enlarged crop, its scale, method and gate score

Records sit beside ``catalog.py`` in the storage layer: they import the catalog only for
types, so the catalog can list their migrations. Tables not yet moved here are read where
their stage writes them (see docs/architecture.md, "Records").
"""
