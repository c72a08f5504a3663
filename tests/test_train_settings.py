"""Training settings as a user writes them: YAML's booleans for choice words, save precision."""

from __future__ import annotations

import pytest

from animlora.config import load_settings
from animlora.config.loader import parse_set_options, read_yaml
from animlora.errors import ConfigError


def test_unquoted_no_is_the_choice_no(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("train:\n  mixed_precision: no\n")
    assert read_yaml(config)["train"]["mixed_precision"] is False  # what YAML 1.1 makes of it
    settings = load_settings(config_files=[config]).settings
    assert settings.train.mixed_precision == "no"
    for spelling in ("no", "No", "NO", "off", "false", "'no'"):
        over = parse_set_options([f"train.mixed_precision={spelling}"])
        assert load_settings(overrides=over).settings.train.mixed_precision == "no", spelling


def test_a_boolean_that_is_no_choice_is_still_refused():
    with pytest.raises(ConfigError, match=r"train.mixed_precision = True is not valid: allowed: no, fp16, bf16"):
        load_settings(overrides=parse_set_options(["train.mixed_precision=yes"]))
    # real boolean settings keep their booleans
    assert load_settings(overrides=parse_set_options(["train.flip_aug=no"])).settings.train.flip_aug is False


def test_empty_float32_cast_warning_is_silenced_and_a_real_one_kept(request):
    import io
    import logging

    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL
    from diffusers.utils import logging as dlogging

    from animlora.training.trainer import _DropMessage, quiet_library_noise

    # read diffusers' records through a handler of our own: its stderr handler is bound to the
    # stream of whichever test first used it; earlier tests may also have installed the filter
    target = dlogging.get_logger("diffusers.models.modeling_utils")
    for f in [f for f in target.filters if isinstance(f, _DropMessage)]:
        target.removeFilter(f)
    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_warning()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = dlogging.get_logger("diffusers")
    root.addHandler(handler)
    request.addfinalizer(lambda: (root.removeHandler(handler), dlogging.set_verbosity(verbosity)))

    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, layers_per_block=1)
    vae.to("cpu", dtype=torch.float32)
    assert "should be kept in float32: []" in stream.getvalue()  # the noise, before
    quiet_library_noise()
    stream.seek(0)
    stream.truncate()
    vae.to("cpu", dtype=torch.float32)
    target.warning("modules that should be kept in float32: ['norm']")
    err = stream.getvalue()
    assert "float32: []" not in err and "float32: ['norm']" in err


def test_bitsandbytes_noise_lines_are_silenced_and_its_other_warnings_kept(caplog):
    """bitsandbytes 0.50 logs this through ``bitsandbytes.backends.cpu.ops`` when it is imported
    (by peft) on a CPU with AVX512-BF16 and without the ``kernels`` package (checked by hand with
    bitsandbytes 0.50.2: the line shows without the filter, not with it; docs/training.md)."""
    import logging

    from animlora.training.trainer import LoraTrainer

    settings = load_settings().settings
    LoraTrainer(settings.train, settings.models, seed=0)  # installs the filters before any import
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you "
                       "already `pip install kernels` and the kernels >= 0.11.1", "No module named 'kernels'")
        logger.warning("No prebuilt binary for CUDA 13.1, loading CUDA 13.0 instead.")
        # LLM.int8's per-call line (bitsandbytes 0.50.2, autograd/_functions.py), 4232 times in 4 steps
        int8 = logging.getLogger("bitsandbytes.autograd._functions")
        int8.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "torch.bfloat16")
    assert [r.getMessage() for r in caplog.records] == ["No prebuilt binary for CUDA 13.1, loading CUDA 13.0 instead."]
