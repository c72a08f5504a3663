"""Records: what stages hand each other through the catalog, one module per stage.

A records module owns its stage's tables — the migration that makes them (tables made by
the migrations that shipped before ``records/`` stay in ``catalog.MIGRATIONS``, which is
append-only), the row type (a frozen dataclass), the writers its stage calls and the readers
everyone else calls — so the SQL of a table lives in one file and a reader never spells
another stage's columns. The stage folders are named once, in :mod:`.folders`.

- :mod:`animlora.records.runs`       the runner's ``stage_runs`` / ``stage_items`` (status, resume)
- :mod:`animlora.records.extract`    ``videos``, ``shots``, ``frames``, meta ``extract.stats.<video>``
- :mod:`animlora.records.segment`    ``instances``, ``tracks``, ``segment_frames`` (the one reader of a
  project's instances with their lineage, :func:`~animlora.records.segment.project_instances`)
- :mod:`animlora.records.prefilter`  ``prefilter_results``: each instance's verdict
- :mod:`animlora.records.inpaint`    ``plates``, meta ``inpaint.temporal:<shot>``, ``inpaint.fallback``
- :mod:`animlora.records.deocclude`  ``deocclude_fills``: the filled box of each occluded instance
- :mod:`animlora.records.embed`      ``identity_instances``, ``embeddings``
- :mod:`animlora.records.cluster`    ``clusters``, ``cluster_assignments``, ``identity_distances``
- :mod:`animlora.records.decisions`  ``review_decisions``, ``character_members``
- :mod:`animlora.records.caption`    ``captions`` (the stage's rows and a person's edits)
- :mod:`animlora.records.dataset`    ``dataset_items``: the images of each character's dataset
- :mod:`animlora.records.folders`    each stage's folder in a project
- :mod:`animlora.records.enhance`    ``enhanced_crops``: each enlarged crop, its scale, method and gate score

Records sit beside ``catalog.py`` in the storage layer: they import the catalog only for
types (and ``now``, lazily), so the catalog can list their migrations. No SQL lives
outside ``records/``, ``catalog.py`` and the runner (``tests/test_architecture.py``).
"""
