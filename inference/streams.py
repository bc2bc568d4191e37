"""Side CUDA streams by purpose, made once per device.

torch.cuda.Stream() hands out one of a fixed pool of streams per priority
(32) in rotation, so the 33rd call returns the first stream again. A stream
made per call (per graph capture, per sender connection) therefore comes
back, sooner or later, as the stream of another purpose, and the work of
two threads lands on one stream: a graph captured on the step thread would
record the upload thread's patchify kernels (which then never run), or a
KV send. Every side stream the engine uses comes from here, one per
(device, purpose), so a process holds a handful of pool streams and no two
purposes share one.

Purposes in use: "upload" (image and batch uploads, h2d.py), "graph-capture"
and "graph-warmup" (graph_capture.py, cuda_graph.py, sampler_graph.py),
"kv-send" (the disaggregated prefill worker's transfers), "kv-ipc" (cuda-ipc
copies into the peer's pool).

Priority: the KV streams are made at high priority. A same-device copy and
the gather/scatter of many block runs run on SMs; at normal priority their
thread blocks queue behind every block of the prefill kernels already
launched (a vision attention call is thousands), and the decode side waits
for that KV to start the request. Other purposes keep normal priority.
"""
from __future__ import annotations

import threading

import torch

_STREAMS: dict[tuple[int, str], torch.cuda.Stream] = {}
_LOCK = threading.Lock()
HIGH_PRIORITY = frozenset({"kv-send", "kv-ipc"})


def side_stream(device: torch.device | str, purpose: str) -> torch.cuda.Stream:
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (index, purpose)
    found = _STREAMS.get(key)
    if found is not None:
        return found
    with _LOCK:
        if key not in _STREAMS:
            # torch: 0 is normal, a negative number higher (clamped to the device's range)
            priority = -1 if purpose in HIGH_PRIORITY else 0
            _STREAMS[key] = torch.cuda.Stream(device=torch.device("cuda", index), priority=priority)
        return _STREAMS[key]
