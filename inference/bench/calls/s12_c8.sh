#!/usr/bin/env bash
# Session 12, call 8: GPU tests after the review mends: the fused GEMM's own file (fp16, ragged column
# tile, CUDA-graph replay, unsupported operands) and the transfer tests (cuda-ipc) after the
# release-once change. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 130 python3 -m pytest -q -m gpu tests/inference/ops/test_cuda_gemm.py tests/inference/transfer \
  -p no:cacheprovider 2>&1 | tail -15
