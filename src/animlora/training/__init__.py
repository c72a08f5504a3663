"""LoRA training: the built-in diffusers+peft trainer, kohya-format files, the sd-scripts engine,
and checkpoint evaluation.

Modules import torch only inside functions, so importing this package is cheap:

- ``dataset``      the dataset folder (images/ + captions/ + metadata.json): checks, buckets, captions
- ``base_model``   load SD 1.5 / SDXL components from a folder, a single file or a hub id
- ``network``      which modules get LoRA (kohya's set) and how they are added with peft
- ``kohya_format`` our own peft → kohya key conversion, ``ss_*`` metadata, atomic saving
- ``state``        resume state (weights, optimizer, scheduler, step, RNG) as safetensors + JSON
- ``trainer``      the training procedure, as numbered steps
- ``sampling``     pipelines from trained components, sample images
- ``sd_scripts``   the kohya engine: TOML writers and the ``accelerate launch`` command
- ``evaluation``   per-checkpoint images, metrics, grid, plot, HTML report, best pick
"""

from __future__ import annotations
