"""Kill -9 + resume of a 2-process data-parallel training run is bit-identical to an
uninterrupted 2-process run (`animlora train --num-processes 2`, the built-in engine under
`accelerate launch`; on a machine without CUDA the two processes run on the CPU over gloo).

Not a CI test: it makes three 2-process runs, each three fresh Python processes importing torch
and diffusers (the launcher and two ranks), ~3 minutes on 2 CPU cores (docs/scale.md). What it
does, on the tiny SD 1.x model of the tests (tests/tiny_sd.py), 4 images, global batch 2,
2 epochs × 2 steps, a resume state every step:

1. an uninterrupted 2-process run → its final LoRA;
2. the same command, the launching `animlora train` process group killed with SIGKILL as soon as
   the state of step 1 is saved (the ranks end with their launcher, `ANIMLORA_LAUNCHER_PID`);
3. the same command again: it resumes ("resumed_from_step" ≥ 1) and its final LoRA must equal
   run 1's bit for bit.

    python benchmarks/parallel_resume.py [--keep DIR]

Prints one line per run and `bit-identical: yes` (exit 0) or the largest difference (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

SETTINGS = {
    "project": {"seed": 7},
    "train": {"resolution": 16, "min_bucket": 8, "max_bucket": 32, "bucket_step": 8, "network_dim": 4,
              "network_alpha": 2, "sample_every_n_epochs": 0, "gradient_checkpointing": False,
              "tensorboard": False, "mixed_precision": "no", "min_snr_gamma": 0, "lr_scheduler": "constant",
              "unet_lr": 2e-3, "text_encoder_lr": 1e-3, "epochs": 2, "batch_size": 2, "save_precision": "fp32",
              "save_state_every_n_steps": 1, "num_processes": 2},
}


def command(data: Path, base: Path, config: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "animlora", "train", "--dataset", str(data), "--base-model", str(base),
            "--config", str(config), "--output", str(run), "--json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    import tiny_sd
    from train_support import kill_train_after_state

    work = args.keep or Path(tempfile.mkdtemp(prefix="animlora-parallel-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    base = tiny_sd.build_sd15(work / "sd15")
    data = tiny_sd.write_dataset(work / "data" / "luca", n=4)
    config = work / "tiny.yaml"
    config.write_text(json.dumps(SETTINGS))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    started = time.monotonic()
    reference = subprocess.run(command(data, base, config, work / "reference"), env=env, capture_output=True,
                               text=True, check=False)
    if reference.returncode:
        print(reference.stderr[-3000:])
        return 2
    print(f"1. uninterrupted 2-process run: {time.monotonic() - started:.0f} s")

    started = time.monotonic()
    run = work / "run"
    kill_train_after_state(data, base, SETTINGS, run, step=1)
    print(f"2. killed (SIGKILL, its process group) after state {json.loads((run / 'state' / 'latest.json').read_text())}"
          f": {time.monotonic() - started:.0f} s")

    started = time.monotonic()
    resumed = subprocess.run(command(data, base, config, run), env=env, capture_output=True, text=True, check=False)
    if resumed.returncode:
        print(resumed.stderr[-3000:])
        return 2
    out = json.loads(resumed.stdout)
    print(f"3. re-run: resumed from step {out.get('resumed_from_step')}, {out.get('steps')} steps: "
          f"{time.monotonic() - started:.0f} s")

    from safetensors.torch import load_file

    a, b = load_file(str(work / "reference" / "luca.safetensors")), load_file(str(run / "luca.safetensors"))
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a) if a.keys() == b.keys() else float("inf")
    ok = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a) and (out.get("resumed_from_step") or 0) >= 1
    print(f"bit-identical: {'yes' if ok else 'NO'} ({len(a)} tensors, max |Δ| {diff:g})")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
