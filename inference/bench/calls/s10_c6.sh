#!/usr/bin/env bash
# Session 10, call 6: py-spy of bench transfer cuda-ipc at 4 and 16 MiB (c5: 67 / 71 % of the device
# copy; 64 MiB and up 85-88 %): where the sender's and the receiver's host time goes, per thread.
# Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
py-spy record -r 1000 --subprocesses --threads -f raw -o "$out/transfer_spy.txt" -- \
  python3 -m docpipe.cli bench transfer --transports cuda-ipc --sizes 4M,16M --repeat 3 2>&1 | grep -v "^py-spy>" | tail -6
gzip -9 "$out/transfer_spy.txt"
