"""DLSlime's TCP endpoint (one-sided write between two processes on
loopback) as a peer figure beside our `tcp` transport in `docpipe bench
transfer --peers dlslime`. Needs the `dlslime` package (and the libibverbs1
system library its native module links to); not a dependency of docpipe."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np

from inference.transfer.measure import Figure, _time_loop


def _target(max_bytes: int, conn) -> None:
    import dlslime

    buf = np.zeros(max_bytes, dtype=np.uint8)
    ep = dlslime.TcpEndpoint(ip="127.0.0.1", port=0)
    ep.register_memory_region("kv", buf.ctypes.data, 0, buf.nbytes)
    conn.send(json.dumps(ep.endpoint_info()))
    ep.connect(json.loads(conn.recv()))
    conn.recv()  # stop
    ep.shutdown()


class DlslimeTcpPeer:
    """Same sizes, same slot rotation as our sender: write n bytes, wait."""

    def __init__(self, max_bytes: int):
        import dlslime

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_target, args=(max_bytes, child), daemon=True)
        self._proc.start()
        remote = json.loads(self._conn.recv())
        self._src = np.random.default_rng(0).integers(0, 255, max_bytes, dtype=np.uint8)
        self._ep = dlslime.TcpEndpoint(ip="127.0.0.1", port=0)
        self._h = self._ep.register_memory_region("kv", self._src.ctypes.data, 0, self._src.nbytes)
        self._rh = self._ep.register_remote_memory_region("kv", remote["mr_info"]["kv"])
        self._conn.send(json.dumps(self._ep.endpoint_info()))
        self._ep.connect(remote)
        self.max_bytes = max_bytes

    def measure(self, num_bytes: int, count: int, single_count: int) -> Figure:
        ep, h, rh, n = self._ep, self._h, self._rh, num_bytes
        return _time_loop(lambda o: ep.write([(h, rh, o, o, n)], None).wait(), count, single_count, n, self.max_bytes)

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)
        self._ep.shutdown()
