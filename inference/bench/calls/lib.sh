# Shared by the device call scripts (from session 7 on; earlier scripts stay as they ran).
# Source it after setting `out`: `pipe` is the 128-page pipeline benchmark of the session INDEX
# files, `pages NAME` prints pages/s of $out/pipeline_128p_NAME.json, `show` keeps a run's
# summary lines.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" "$1"; }
show() { grep "device busy\|host: launch\|vision encoder graphs\|Traceback\|Error\|capture failed" | cut -c1-220; }
# `pd_run NAME PAGES [bench pd options]`: one `docpipe bench pd` of dummy:mineru2.5 on gpu-1p1d-mps into
# $out/pd_h200_mps_NAME.json, its summary lines printed; its console log is deleted (a call returns a
# limited number of files). From session 10 on; the session 9 scripts kept their own copies as they ran.
pd_run() {
  local name=$1 pages=$2; shift 2
  timeout 170 python3 -m docpipe.cli bench pd --model dummy:mineru2.5 --layout layouts/gpu-1p1d-mps.toml \
    --pages "$pages" --out "$out/pd_h200_mps_$name.json" "$@" > "$out/pd_$name.log" 2>&1
  echo "== $name"; grep "monolithic:\|disaggregated:\|  title  \|  transfer  \|decode_max_step\|Traceback\|Error" "$out/pd_$name.log" | head -8
  rm -f "$out/pd_$name.log"
}
