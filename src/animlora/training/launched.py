"""One process of a data-parallel built-in training run, started by ``accelerate launch``.

``engine.train`` with ``train.num_processes > 1`` writes the run's settings to a JSON file and
launches ``accelerate launch --multi_gpu --num_processes N -m animlora.training.launched
SETTINGS DATASET OUTPUT RESULT [--fresh]``. Every process trains its share of each batch
(gradients averaged over the processes); the first writes the files and ``RESULT``, a JSON
summary (or the error) the launching process reads back.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


def _exit_with(pid: int) -> None:
    """End this process when the animlora process that launched the run is gone (kill -9 of it
    would otherwise leave the ranks training on: torchrun starts them in sessions of their own)."""
    import threading
    import time

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(137)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, name="animlora-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    from animlora.config.schema import Settings
    from animlora.errors import AnimloraError
    from animlora.training.trainer import LoraTrainer

    settings_file, dataset, output_dir, result_file = (Path(a) for a in argv[:4])
    fresh = "--fresh" in argv[4:]
    main_process = int(os.environ.get("RANK", "0")) == 0
    if os.environ.get("ANIMLORA_LAUNCHER_PID"):
        _exit_with(int(os.environ["ANIMLORA_LAUNCHER_PID"]))
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
    settings = Settings.model_validate(json.loads(settings_file.read_text(encoding="utf-8")))
    trainer = LoraTrainer(settings.train, settings.models, seed=settings.project.seed)
    try:
        result = trainer.train(dataset, output_dir, settings.train.base_model, fresh=fresh)
    except AnimloraError as exc:
        if main_process:
            result_file.write_text(json.dumps({"error": str(exc)}), encoding="utf-8")
        return 1
    if main_process:
        result_file.write_text(json.dumps({
            "final": str(result.final) if result.final else None, "checkpoints": [str(p) for p in result.checkpoints],
            "steps": result.steps, "resumed_from": result.resumed_from, "epoch_losses": result.epoch_losses,
            "losses": result.losses, "seconds": result.seconds,
        }), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
