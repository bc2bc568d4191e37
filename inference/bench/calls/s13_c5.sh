#!/usr/bin/env bash
# Session 13, call 5: GPU tests of the CUDA ops (rotary in place on the packed qkv, the vision flash
# kernel, the vision attention choice, the worker's graph tests) without FA4; keeps the first part of FA4's
# compiler library (.fa4a) on the machine for call 6. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
mkdir -p /tmp/fa4keep && cp "${REPO_ROOT:?}"/.fa4a/* /tmp/fa4keep/
timeout 300 python3 -m pytest -q -m gpu tests/inference/ops tests/inference/worker -p no:cacheprovider 2>&1 | tail -6
