#!/usr/bin/env bash
# Session 13, call 10: after the review mends, FA4's GPU tests (against the reference backend) and the
# attention choice's GPU test with FA4 installed. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fa4_setup.sh"
timeout 120 python3 -m pytest -q -m gpu tests/inference/ops/test_fa4.py tests/inference/ops/test_vision_attention_choice.py \
  -p no:cacheprovider 2>&1 | tail -2
