# Shared by the device call scripts (from session 7 on; earlier scripts stay as they ran).
# Source it after setting `out`: `pipe` is the 128-page pipeline benchmark of the session INDEX
# files, `pages NAME` prints pages/s of $out/pipeline_128p_NAME.json, `show` keeps a run's
# summary lines.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
pipe="python3 -m docpipe.cli bench pipeline --pages 128 --window 128 --baseline none --max-num-seqs 512 --no-time-split --warmup-pages 24"
pages() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['sides'][0]; print(sys.argv[2], 'pages/s', round(s['pages_per_s'],3))" "$out/pipeline_128p_$1.json" "$1"; }
show() { grep "device busy\|host: launch\|vision encoder graphs\|Traceback\|Error\|capture failed" | cut -c1-220; }
