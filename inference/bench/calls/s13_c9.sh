#!/usr/bin/env bash
# Session 13, call 9: after the review mends, the GPU tests of the attention choice and the in-place
# rotary without FA4; keeps .fa4a for call 10. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
mkdir -p /tmp/fa4keep && cp "${REPO_ROOT:?}"/.fa4a/* /tmp/fa4keep/
timeout 100 python3 -m pytest -q -m gpu tests/inference/ops/test_vision_attention_choice.py tests/inference/ops/test_cuda_ops.py \
  -k "rotary or warm" -p no:cacheprovider 2>&1 | tail -2
