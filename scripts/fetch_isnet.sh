#!/bin/sh
# Fetch the ISNet matting model into animlora's model store (offline use, and the tests that
# need the real model). Sources: the Hugging Face hub, else the npm package
# @imgly/background-removal-data (chunks reassembled, sha256 checked).
set -e
exec "${PYTHON:-python}" -m animlora models pull isnet "$@"
