"""Host and device cost of preparing one request (run on the device that matters).

    python3 -m inference.bench.processor_cost --out FILE.json

For a 1036x1036 layout page and a 896x140 text crop (synthetic noise, the
dummy:mineru2.5 processor): milliseconds per request of Processor.host
(prompt, image array, expansion, positions), of Processor.finish as the host
sees it (upload + patch ops queued), of finish followed by a device sync
(what the device spends), and of the pieces of the fast path: np.array of
the image, pin_memory of it, the upload of the pinned copy. Medians of --reps.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from inference.bench.synthetic import noise_request
from inference.models.loader import load_config
from inference.processor import Processor


def _ms(fn, reps: int, sync: bool) -> float:
    times = []
    for _ in range(reps):
        if sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = device.type == "cuda"
    cfg = load_config("dummy:mineru2.5")
    proc = Processor(cfg, None, device=device)
    ids = (cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id)
    rng = np.random.default_rng(0)
    rows = {}
    for name, (w, h) in {"layout_1036": (1036, 1036), "text_896x140": (896, 140)}.items():
        req = noise_request(w, h, ids, rng)
        host = proc.host(req)
        arr = np.array(req["images"][0])
        pinned = torch.from_numpy(arr).pin_memory() if sync else torch.from_numpy(arr)
        proc.finish(host)  # warm-up
        rows[name] = {
            "host_ms": _ms(lambda: proc.host(req), args.reps, False),
            "finish_host_ms": _ms(lambda: proc.finish(host), args.reps, False),
            "finish_synced_ms": _ms(lambda: proc.finish(host), args.reps, sync),
            "np_array_ms": _ms(lambda: np.array(req["images"][0]), args.reps, False),
            "pin_memory_ms": _ms(lambda: torch.from_numpy(arr).pin_memory(), args.reps, False) if sync else None,
            "upload_pinned_synced_ms": _ms(lambda: pinned.to(device, non_blocking=True), args.reps, sync),
        }
        print(name, {k: (round(v, 3) if v is not None else None) for k, v in rows[name].items()}, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": str(torch.cuda.get_device_name() if sync else "cpu"), "torch": torch.__version__,
                       "reps": args.reps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
