#!/usr/bin/env bash
# The wheels scripts/gpu_checks.sh needs on the lent GPU machine, which reaches no package index:
# what its image (Python 3.12, torch, transformers, peft, accelerate, onnxruntime, opencv) lacks,
# downloaded here into .gpu/ (ignored by git). Then run the checks there with the device tool,
# `carry: [".gpu"]` and the command `bash scripts/gpu_checks.sh`.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .gpu
get() { python3 -m pip download -q --no-deps -d .gpu --python-version 3.12 --only-binary=:all: --platform "$@"; }
get manylinux_2_24_x86_64 bitsandbytes diffusers spandrel prodigyopt pydantic annotated-types typing-inspection omegaconf
core=$(unzip -p .gpu/pydantic-*.whl '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: pydantic-core==\([0-9.]*\).*/\1/p')
rm -f .gpu/pydantic_core-*.whl  # under manylinux_2_24 pip finds only a py3-none placeholder of it
get manylinux_2_17_x86_64 "pydantic-core==$core"
du -sh .gpu
