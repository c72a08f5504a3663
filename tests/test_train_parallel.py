"""`train.num_processes` (`animlora train --num-processes N`): the built-in trainer under
`accelerate launch`, two CPU processes over gloo, gives the final weights of one process with the
same global batch; the kohya engine hands the same to sd-scripts' accelerate launch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

import tiny_sd  # noqa: E402
from animlora.config import load_settings  # noqa: E402
from animlora.training import engine  # noqa: E402
from train_support import TINY_SD  # noqa: E402

TINY = {**TINY_SD, "epochs": 1, "batch_size": 2, "save_precision": "fp32"}


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(tmp_path):
    base = tiny_sd.build_sd15(tmp_path / "sd15")
    data = tiny_sd.write_dataset(tmp_path / "data" / "luca", n=4)
    weights, runs = {}, {}
    for n in (1, 2):
        settings = load_settings(overrides={"train": {**TINY, "base_model": str(base), "num_processes": n},
                                            "project": {"seed": 7}}).settings
        runs[n] = engine.train(settings, data, tmp_path / f"run{n}")
        weights[n] = load_file(str(runs[n].final))
    assert runs[2].summary["steps"] == runs[1].summary["steps"] == 2  # 4 images, global batch 2
    assert sorted(weights[2]) == sorted(weights[1])
    moved = max(float(v.abs().max()) for k, v in weights[1].items() if k.endswith("lora_up.weight"))
    assert moved > 1e-4  # up matrices start at zero: the comparison is of trained weights
    # two processes all-reduce the gradient in another order than one process sums its batch, and
    # Adam turns that rounding into up to ~0.4% of the trained movement where a gradient is near
    # zero (1.45e-5 of 4.0e-3 on an AVX512 CPU, under 1e-5 on AVX2): tolerance relative to what
    # training moved; a wrong batch or a missing all-reduce differs by the movement itself
    for key, value in weights[1].items():
        torch.testing.assert_close(weights[2][key], value, rtol=1e-4, atol=0.01 * moved, msg=key)
    # files of one run, written once (by the first process)
    assert sorted(p.name for p in (tmp_path / "run2").glob("*.safetensors")) == ["luca-000001.safetensors",
                                                                                "luca.safetensors"]
    assert (tmp_path / "run2" / "training_results.json").is_file()


def test_kohya_engine_passes_the_process_count_to_accelerate_launch(tmp_path):
    from animlora.training.inputs import load_dataset
    from animlora.training.sd_scripts import prepare_kohya

    root = tmp_path / "sd-scripts"
    root.mkdir()
    (root / "train_network.py").write_text("# stand-in\n")
    data = tiny_sd.write_dataset(tmp_path / "data" / "luca", n=2)
    commands = {}
    for n in (1, 4):
        settings = load_settings(overrides={"train": {"engine": "kohya", "sd_scripts": str(root),
                                                      "num_processes": n}}).settings
        job = prepare_kohya(settings.train, load_dataset(data), tmp_path / f"run{n}", base_model="base",
                            family="sd15", seed=7, output_name="luca")
        commands[n] = list(job.command)
    assert "--num_processes" not in commands[1] and "--multi_gpu" not in commands[1]
    at = commands[4].index("--num_processes")
    assert commands[4][at - 1: at + 2] == ["--multi_gpu", "--num_processes", "4"]
    assert at < commands[4].index(str(root / "train_network.py"))
