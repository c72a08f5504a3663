"""A stand-in for sd-scripts' train_network.py: reads the same TOML files, "trains" a number
deterministically step by step, saves states and LoRA files with sd-scripts' names, honours
--resume / skip_until_initial_step / save_last_n_epochs_state, and can SIGKILL itself at a step
(STANDIN_KILL_AT) so tests exercise a real kill and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tomllib
from pathlib import Path


def main() -> None:
    config = tomllib.loads(Path(sys.argv[sys.argv.index("--config_file") + 1]).read_text())
    dataset = tomllib.loads(Path(config["dataset_config"]).read_text())
    (group,) = dataset["datasets"]
    (subset,) = group["subsets"]
    images = len(json.loads(Path(subset["metadata_file"]).read_text()))
    per_epoch = -(-images * subset["num_repeats"] // group["batch_size"])
    epochs, name, out = config["max_train_epochs"], config["output_name"], Path(config["output_dir"])
    with open(out / "launches.txt", "a") as log:
        log.write(json.dumps({"resume": config.get("resume")}) + "\n")
    weight, step = int(config["seed"]), 0
    if config.get("resume"):
        state = Path(config["resume"])
        step = json.loads((state / "train_state.json").read_text())["current_step"]
        weight = json.loads((state / "model.json").read_text())["weight"]
        if not config.get("skip_until_initial_step"):
            step -= step % per_epoch  # sd-scripts without the skip: the cut epoch starts over
    kill_at = int(os.environ.get("STANDIN_KILL_AT", "0"))

    def save_state(folder: Path, epoch: int) -> None:
        folder.mkdir(exist_ok=True)
        (folder / "model.json").write_text(json.dumps({"weight": weight}))
        (folder / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
        (folder / "optimizer.bin").write_bytes(b"x" * 64)
        (folder / "random_states_0.pkl").write_bytes(b"x" * 16)

    for epoch in range(step // per_epoch, epochs):
        for _ in range(step - epoch * per_epoch, per_epoch):
            step += 1
            weight = (weight * 31 + step) % 1_000_003
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        done = epoch + 1
        if done % config["save_every_n_epochs"] == 0 and done < epochs:
            (out / f"{name}-{done:06d}.safetensors").write_text(str(weight))
            save_state(out / f"{name}-{done:06d}-state", done)
            keep = config.get("save_last_n_epochs_state")
            if keep:
                shutil.rmtree(out / f"{name}-{done - config['save_every_n_epochs'] * keep:06d}-state", ignore_errors=True)
    save_state(out / f"{name}-state", epochs)
    (out / f"{name}.safetensors").write_text(str(weight))


if __name__ == "__main__":
    main()
