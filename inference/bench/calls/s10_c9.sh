#!/usr/bin/env bash
# Session 10, call 9: after the review's mends (event slot per record, METAS shape checked before any
# delivery, one mapped runtime of torch's CUDA major only, copy_ fallback, bounds before any copy):
# GPU tests of transfer and disagg, bench transfer cuda-ipc once, PD 64 pages x2. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
python3 -c "import torch; torch.zeros(1, device=\"cuda\"); from inference.transfer import cuda_memcpy as m; print(\"cuda\", torch.version.cuda, m.loaded_runtimes(), m.runtime())"
timeout 200 python3 -m pytest -q -rs -m gpu tests/inference/transfer tests/inference/disagg 2>&1 | tail -4
timeout 150 python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M --repeat 3 \
  --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -11 | head -6
pd_run p64a 64
pd_run p64b 64
