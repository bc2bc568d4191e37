#!/usr/bin/env bash
# Prepared in session 9 for the next session's first device call (then s10_second.sh on the warm
# machine). (1) GPU tests of the vision flash kernel (incl. the new exp_bf16 configs: P = exp2 in
# packed bf16 pairs, half the special-function ops; interpreter cannot run inline PTX, so these are
# their first runs) and of the cuda-ipc groups. (2) The attention sweep (xb rows next to their plain
# configs). (3) layout_ab: default graph config vs two xb ones (session 9: 34.4-35.0 pages/s default;
# #3 needs 40). (4) cuda-ipc transfer bench: pipelined through send_many now, plus the device copy
# into the receiver's pool through the IPC mapping (session 5: 16-19 % of the device copy up to 64
# MiB, 48 % at 256 MiB; the must-show is >= 80 %). Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
timeout 150 python3 -m pytest -q -m gpu tests/inference/ops/test_vision_flash.py tests/inference/transfer/test_cuda_ipc_plan.py \
  tests/inference/transfer/test_registry.py 2>&1 | tail -3
timeout 110 python3 -m inference.bench.attn_vision --out "$out/attn.json" 2>&1 | grep "B16\|B4x\|wall\|FAIL\|rror" | tail -40
for config in default m128n64w8s3tmaxbr128 m64n64w4s3tmaxb; do
  if [ $config = default ]; then unset DOCPIPE_VISION_GRAPH_CONFIG; else export DOCPIPE_VISION_GRAPH_CONFIG=$config; fi
  timeout 90 python3 -m inference.bench.layout_ab --prepare ahead --reps 3 --out "$out/layout_$config.json" 2>&1 \
    | grep "pages/s\|Error\|Traceback" | cut -c1-200
done
unset DOCPIPE_VISION_GRAPH_CONFIG
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -12
