"""RouterClient: submit requests to a router and collect their results.

    client = RouterClient(address, token)
    client.submit("r1", {"prompt_token_ids": [...], "images": [pil]}, SamplingParams(temperature=0))
    result = client.wait(["r1"])["r1"]   # protocol.Result or protocol.Rejected

A reader thread files every Result / Rejected under its request id (a
duplicate for an id already filed is ignored, so completion is idempotent).
"""
from __future__ import annotations

import dataclasses
import queue
from collections import Counter
import threading
import time

from inference.disagg import protocol as P
from inference.disagg.channel import connect, read_loop


def to_submit(request_id: str, request: dict, sampling) -> P.Submit:
    if "prompt_token_ids" not in request:
        raise ValueError(f"request {request_id}: the disaggregated engine takes prompt_token_ids (tokenize first)")
    images = [im.convert("RGB") for im in request.get("images") or []]
    return P.Submit(request_id=request_id, prompt_token_ids=[int(t) for t in request["prompt_token_ids"]],
                    sampling=dataclasses.asdict(sampling), images=[im.tobytes() for im in images],
                    image_sizes=[list(im.size) for im in images])


class RouterClient:
    def __init__(self, address: str, token: bytes, timeout_s: float = 10.0):
        self.channel = connect(address, token, timeout_s)
        self.results: dict[str, object] = {}
        self.deliveries: Counter = Counter()  # request id -> results received (1 unless the router repeats one)
        self._cond = threading.Condition()
        self._replies: queue.Queue = queue.Queue()  # MetricsReply / Error / Hello
        self._reader = threading.Thread(target=read_loop, args=(self.channel, self._on_message), daemon=True)
        self._reader.start()

    def _on_message(self, _channel, msg) -> None:
        if isinstance(msg, (P.Result, P.Rejected)):
            with self._cond:
                self.deliveries[msg.request_id] += 1
                self.results.setdefault(msg.request_id, msg)
                self._cond.notify_all()
        else:
            self._replies.put(msg)

    def submit(self, request_id: str, request: dict, sampling) -> None:
        self.channel.send(to_submit(request_id, request, sampling))

    def wait(self, request_ids: list[str], timeout_s: float | None = None) -> dict[str, object]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not all(r in self.results for r in request_ids):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    missing = [r for r in request_ids if r not in self.results]
                    raise TimeoutError(f"{len(missing)} requests unfinished after {timeout_s} s: {missing[:5]}")
                if not self._reader.is_alive():
                    raise ConnectionError("router connection lost")
                self._cond.wait(min(left, 0.5) if left is not None else 0.5)
            return {r: self.results[r] for r in request_ids}

    def wait_any(self, request_ids: set[str], timeout_s: float) -> list[str]:
        """Ids of request_ids that have finished (waits until at least one has)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not (done := [r for r in request_ids if r in self.results]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no result within {timeout_s} s")
                self._cond.wait(min(left, 0.5))
            return done

    def request(self, msg, timeout_s: float = 10.0):
        """Send a message that gets one direct reply (MetricsRequest, Hello)."""
        self.channel.send(msg)
        return self._replies.get(timeout=timeout_s)

    def metrics(self, fmt: str = "json", reset: bool = False) -> str:
        """The router's metrics; reset: its latency windows start empty after this reply."""
        reply = self.request(P.MetricsRequest(format=fmt, reset=reset))
        if not isinstance(reply, P.MetricsReply):
            raise RuntimeError(f"router answered {reply!r:.200}")
        return reply.body

    def close(self) -> None:
        self.channel.close()
