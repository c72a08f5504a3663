#!/usr/bin/env bash
# The checks that need a CUDA GPU, in order of what is least verified elsewhere; each with its own
# time limit, all output in $OUT/gpu_checks.log (or ./gpu_checks.log). Run from the repository root
# with a Python that has torch (CUDA), bitsandbytes, diffusers, peft, transformers, spandrel and
# animlora's base dependencies.
set -u
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LOG=${OUT:-.}/gpu_checks.log
export PYTHONPATH=$PWD/src
# Packages the device image lacks (bitsandbytes, diffusers, spandrel, pydantic, ...): `bash
# scripts/gpu_wheels.sh` here first puts their wheels in .gpu/ (ignored, ~50 MB; send it along with
# the device tool's `carry: [".gpu"]`); they are unpacked for this run, ahead of the image's own.
if ls .gpu/*.whl >/dev/null 2>&1; then
  SITE=$(mktemp -d)
  $PY -m pip install -q --no-index --no-deps --target "$SITE" .gpu/*.whl
  export PYTHONPATH=$SITE:$PWD/src
fi
DEADLINE=${DEADLINE:-570}  # seconds for the whole script: a step gets at most what is left
step() { local limit=$1 left=$((DEADLINE - SECONDS)); shift
  if [ "$left" -lt 30 ]; then echo "=== skipped (out of time): $*" | tee -a "$LOG"; return; fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "=== $* (limit ${limit}s)" | tee -a "$LOG"; local t=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E "truncated because|it/s\]|Loading (weights|pipeline)" | tee -a "$LOG"
  echo "=== rc ${PIPESTATUS[0]} in $((SECONDS - t)) s" | tee -a "$LOG"; }
nvidia-smi -L | tee -a "$LOG"
$PY -c 'import torch, bitsandbytes, diffusers, peft, transformers, spandrel; print("torch", torch.__version__, torch.version.cuda, "| bnb", bitsandbytes.__version__, "| diffusers", diffusers.__version__, "| peft", peft.__version__, "| transformers", transformers.__version__, "| spandrel", spandrel.__version__)' 2>&1 | tee -a "$LOG"
# 0. the sam2 segmentation backend at SAM 2.1's Hiera-T and Hiera-L sizes (random weights) on the sample clip
step 150 $PY benchmarks/sam2_gpu.py --sizes tiny large --frames 48
# 1. the CUDA-only tests: a quantized Flux base (int8, NF4) trains; spandrel fp16 against fp32
step 120 $PY -m pytest -q -p no:cacheprovider tests/test_train_flux.py::test_quantized_base_trains_on_cuda \
  tests/test_enhance.py::test_fp16_on_cuda_matches_fp32_on_a_full_size_rrdbnet
# 2. the 24 GB preset's memory on a full-size Flux transformer (random weights)
step 300 $PY benchmarks/flux_memory.py
# 3. the training and enhancement test files with CUDA present (bf16/fp16 paths, resume)
step 200 $PY -m pytest -q -p no:cacheprovider --timeout 120 tests/test_train_flux.py tests/test_enhance.py tests/test_train_trainer.py
# 4. step time and memory of the trainer against a plain diffusers+peft loop, real SD 1.5 layout
step 120 $PY benchmarks/train.py --sd15 --rounds 1
