#!/usr/bin/env bash
# One device call (H200, repo root, < 4 min): why PD under CUDA MPS is not
# token-identical to the monolithic engine. Each case is one
# `docpipe bench pd --model dummy:mineru2.5 --pages 2` on a layout derived from
# layouts/gpu-1p1d-mps.toml (written to $OUT/layouts), most telling first:
#   fp32 ipc        cuda-ipc under MPS, prefill 60 % / decode 40 % of the SMs (the failing setup)
#   fp32 ipc+sync   same with DOCPIPE_CUDA_IPC_SYNC=1 (both sides drain the device around every copy)
#   fp32 ipc sm100  cuda-ipc under MPS, both roles at 100 %: MPS concurrency without a smaller SM count
#   fp32 nomps      cuda-ipc time-sliced (gpu_sharing none): the known-good control
#   bf16 ...        the same for bfloat16 (identity is not expected there; TPOT and lost workers are)
# plus the SM count a process sees under MPS (first lines), `docpipe bench transfer --transports
# cuda-ipc` and where one cuda-ipc transfer's time goes (after the fp32 cases), and per case any
# error/fault line of the MPS server's logs (kept in $OUT/mps_logs/CASE).
# Reading it: "identical N/26" per case. ipc bad + sync good -> ordering bug in the transport;
# ipc bad + sync bad + sm100 good -> not a race: kernels planned from the MPS-limited SM count
# (decode attention's split plan, cuBLAS heuristics) sum in another order than the monolithic
# engine's; sm100 bad too -> a race that only concurrency shows (or an MPS limitation): nomps
# must stay good as the control.
# tcp is not a case: tcp and shm move CPU pools only (GPU workers refuse them at start).
# Every command has a timeout, and a case is skipped once the time budget is spent.
# Usage: bash inference/bench/calls/pd_mps_bisect.sh OUT [CASES]   (CASES: space-separated names, default all)
set -u
out=${1:?output folder}
cases=${2:-"fp32:ipc fp32:sync fp32:sm100 fp32:nomps bf16:ipc bf16:sync bf16:sm100"}
budget_s=${BISECT_BUDGET_S:-225}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
mkdir -p "$out/layouts"
t0=$(date +%s)
touch "$out/.started"
left() { echo $(( budget_s - ($(date +%s) - t0) )); }
py=python3
reap_mps() {  # a bench killed by its timeout leaves its session MPS daemon (it daemonises): quit it by its pipe
  local d
  for d in "${TMPDIR:-/tmp}"/docpipe-mps-*/pipe; do
    [ -e "$d/control" ] && [ "$(dirname "$d")" -nt "$out/.started" ] || continue  # only daemons of this run
    echo "quitting a left-over session MPS daemon ($d)"
    echo quit | CUDA_MPS_PIPE_DIRECTORY="$d" timeout 20 nvidia-cuda-mps-control >/dev/null 2>&1
  done
}

nvidia-smi --query-gpu=name,memory.used,memory.total,compute_mode --format=csv,noheader

# SM count seen by a process under MPS at 40 % and 100 % (decode attention plans its splits from it)
timeout 40 $py - <<'EOF' 2>&1 | tail -4
import subprocess, sys
from inference.layouts import load_layout
from inference.disagg.mps import GpuSharing
g = GpuSharing(load_layout("layouts/gpu-1p1d-mps.toml")).start()
probe = "import torch; p = torch.cuda.get_device_properties(0); print(p.multi_processor_count)"
try:
    base = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=15).stdout.strip()
    print(f"SMs without MPS: {base}; driver API in this process: {__import__('inference.disagg.mps', fromlist=['x']).physical_sm_count(0)}; MPS active: {g.active}")
    for pct in (40, 100):
        env = {**__import__("os").environ, **g.env_for("decode"), "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(pct)}
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=15, env=env)
        print(f"SMs under MPS at {pct} %: {r.stdout.strip() or r.stderr.strip()[-200:]}")
finally:
    g.stop()
EOF
reap_mps

layout_for() {  # dtype transport sharing -> path of a derived layout
  local dtype=$1 sharing=$2 path="$out/layouts/mps-$1-$2.toml"
  sed -e "s/dtype = \"bfloat16\"/dtype = \"$dtype\"/" \
      -e "s/^mode = \"mps\"/mode = \"$sharing\"/" layouts/gpu-1p1d-mps.toml > "$path"
  if [ "$sharing" = none ]; then sed -i -e '/^sm_percent/d' "$path"; fi
  echo "$path"
}

summary() {  # json -> one line
  $py - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
m, p, c = d["monolithic"], d["disaggregated"], d["router"].get("counters", {})
ms = lambda s: f"{s * 1e3:.1f}"
print(f"identical {d['token_identical_requests']}/{d['requests']}  TPOT p50/p99 ms: mono {ms(m['tpot_s']['p50'])}/{ms(m['tpot_s']['p99'])}"
      f"  pd {ms(p['tpot_s']['p50'])}/{ms(p['tpot_s']['p99'])}  TTFT p50 ms: mono {ms(m['ttft_s']['p50'])} pd {ms(p['ttft_s']['p50'])}"
      f"  mps active {d['gpu_sharing']['active']} sm {d['gpu_sharing']['sm_percent']}"
      f"  decode_lost {c.get('decode_lost', 0)} retries {c.get('retries', 0)}  transfer {d['transfer_gb_per_s']:.2f} GB/s")
EOF
}

run_case() {  # dtype:kind
  local dtype=${1%%:*} kind=${1##*:} sharing=mps extra=() envs=()
  local lt=$dtype; [ "$dtype" = fp32 ] && lt=float32; [ "$dtype" = bf16 ] && lt=bfloat16
  case $kind in
    ipc) ;;
    sync) envs=(DOCPIPE_CUDA_IPC_SYNC=1) ;;
    sm100) extra=(--sm-percent prefill=100 --sm-percent decode=100) ;;
    nomps) sharing=none ;;
    *) echo "unknown case $1"; return ;;
  esac
  local rem; rem=$(left)
  if [ "$rem" -lt 35 ]; then echo "$1: skipped (time budget spent)"; return; fi
  local lay; lay=$(layout_for "$lt" "$sharing")
  local json="$out/pd_$dtype-$kind.json" logf="$out/pd_$dtype-$kind.log"
  local s; s=$(date +%s)
  local mlogs="$out/mps_logs/$dtype-$kind"
  envs+=(DOCPIPE_MPS_KEEP_LOGS="$mlogs")
  env "${envs[@]}" timeout -k 5 $(( rem < 110 ? rem - 5 : 105 )) $py -m docpipe.cli bench pd --model dummy:mineru2.5 \
    --layout "$lay" --pages 2 --threads 4 "${extra[@]}" --out "$json" > "$logf" 2>&1
  local rc=$?
  if [ $rc -eq 0 ] && [ -f "$json" ]; then
    echo "$1 ($(( $(date +%s) - s )) s): $(summary "$json")"
  else
    echo "$1: FAILED rc=$rc after $(( $(date +%s) - s )) s; last lines of $logf:"; grep -v "^\s*$" "$logf" | tail -4
  fi
  [ $rc -eq 0 ] || reap_mps
  if [ -d "$mlogs" ]; then  # MPS server: client faults and errors are only logged there
    grep -ihE "error|fault|fail|terminat" "$mlogs"/*.log 2>/dev/null | tail -3 | sed "s/^/  mps log: /"
  fi
}

transfer_done=0
transfer() {  # once, after the fp32 cases (or at the end)
  [ $transfer_done = 1 ] && return
  transfer_done=1
  local rem; rem=$(left)
  if [ "$rem" -lt 25 ]; then echo "transfer bench: skipped (time budget spent)"; return; fi
  timeout -k 5 $(( rem < 60 ? rem : 60 )) $py -m docpipe.cli bench transfer --transports cuda-ipc --sizes 1M,4M,16M,64M,256M \
    --out "$out/transfer_cuda_ipc.json" 2>&1 | tail -8
  rem=$(left)
  if [ "$rem" -lt 20 ]; then echo "cuda-ipc phases: skipped (time budget spent)"; return; fi
  cat > "$out/cuda_ipc_phases.py" <<'EOF'
# where one cuda-ipc transfer's time goes (median us over 40 one-at-a-time sends, 64 KiB blocks)
import statistics, time, torch
from inference.transfer import TransferConfig, sender as S, cuda_ipc as C
from inference.transfer.measure import TransportPeer


def main() -> None:
    acc = {}
    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter(); r = fn(*a, **k); acc.setdefault(name, []).append(time.perf_counter() - t0); return r
        return wrapper
    S.prepare = timed("prepare", S.prepare)
    C.enqueue_copies = timed("copies", C.enqueue_copies)
    C.CudaIpcSender._move = timed("move", C.CudaIpcSender._move)
    C.CudaIpcSender._send_meta = timed("meta", C.CudaIpcSender._send_meta)
    us = lambda v: f"{statistics.median(v) * 1e6:.0f}"
    peer = TransportPeer("cuda-ipc", 256 << 20, TransferConfig(transport="cuda-ipc", token="bench"))
    for nbytes in (1 << 20, 16 << 20, 256 << 20):
        k = nbytes // peer.block_bytes
        for _ in range(4): peer._send(k).wait(60)
        acc.clear(); sends, acks = [], []
        for _ in range(40):
            t0 = time.perf_counter(); h = peer._send(k); t1 = time.perf_counter(); h.wait(60); sends.append(t1 - t0); acks.append(time.perf_counter() - t1)
        print(f"{nbytes >> 20:4d} MiB {k:5d} blocks: send {us(sends)} us (" + ", ".join(f"{n} {us(v)}" for n, v in acc.items()) + f"), then ack {us(acks)} us")
    peer.close()
    stream, n = torch.cuda.Stream(), 2000
    for name, ev in (("ipc", torch.cuda.Event(interprocess=True)), ("plain", torch.cuda.Event())):
        ev.record(stream); torch.cuda.synchronize(); t0 = time.perf_counter()
        for _ in range(n): ev.record(stream)
        print(f"event record ({name}): {(time.perf_counter() - t0) / n * 1e6:.1f} us")


if __name__ == "__main__":  # the receiver is a spawned process: it re-imports this file
    main()
EOF
  PYTHONPATH="$PWD" timeout -k 5 $(( rem < 40 ? rem : 40 )) $py "$out/cuda_ipc_phases.py" 2>&1 | grep -v Warning | tail -6
}
for c in $cases; do
  [[ $c == bf16:* ]] && transfer
  run_case "$c"
done
transfer
reap_mps
echo "total $(( $(date +%s) - t0 )) s"
