#!/usr/bin/env bash
# Session 9, call 6. PD gpu-1p1d-mps against the monolithic engine on more pages: at 16 pages the p99
# of 208 requests is the ~3rd slowest (always a 9-16-token title) and moved 1.5-2.7x between runs of
# one code (calls 1, 4); 64 pages give 832 requests and a longer stream of layout prefills under
# decode. 16 pages once, 64 pages twice at the default 60/40 SM shares, once at 50/50. Output in $1.
set -u
out=${1:?output folder}
source "$(dirname "$0")/lib.sh"
pd() {  # name, pages, then extra args
  local name=$1 pages=$2; shift 2
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages $pages --out "$out/pd_h200_mps_$name.json" "$@" > "$out/pd_mps_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|  transfer  \|decode_max_step\|Traceback\|Error" "$out/pd_mps_$name.log" | head -8
}
pd p16 16
pd p64a 64
pd p64b 64
pd p64sm50 64 --sm-percent prefill=50 --sm-percent decode=50
