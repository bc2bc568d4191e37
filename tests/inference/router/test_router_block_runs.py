"""The router passes the decode worker's blocks to the prefill worker as they
came (BlockIds, runs on the wire): the TransferRequest it sends names the
same ids, in order, and costs one run per allocation, not one int per id."""
from __future__ import annotations

import json

from inference.disagg import protocol as P
from inference.layouts import SloSpec
from inference.router.policy import WorkerState
from inference.router.router import Router


def test_transfer_request_carries_the_allocated_runs():
    sent = []
    router = Router(SloSpec(ttft_ms=1000, tpot_ms=100, max_queue=8), lambda t, m: sent.append((t, m)), clock=lambda: 0.0)
    for name, role in (("p0", "prefill"), ("d0", "decode")):
        router.add_worker(WorkerState(name=name, role=role, channel=name, transfer_address=f"{name}:1",
                                      num_free_blocks=10000))
    router.submit("client", P.Submit(request_id="a", prompt_token_ids=list(range(10)),
                                     sampling={"temperature": 0.0, "max_tokens": 4}))
    router.on_worker_message("p0", P.PrefillDone(request_id="a@0", num_prompt_tokens=10, first_token=7, rope_delta=0,
                                                 prompt_token_ids=list(range(10)), prefill_s=0.01))
    ids = list(range(40, 40 + 4096)) + list(range(8, 12))
    body = json.dumps({"type": "Allocated", "fields": {"request_id": "a@0", "ok": True,
                                                       "block_ids": [[40, 4096], [8, 4]], "num_free_blocks": 5}})
    router.on_worker_message("d0", P.decode_message(body.encode(), []))
    (tr,) = [m for t, m in sent if t == "p0" and isinstance(m, P.TransferRequest)]
    assert tr.dst_address == "d0:1" and tr.dst_block_ids.tolist() == ids
    wire, _ = P.encode_message(tr)
    assert json.loads(wire)["fields"]["dst_block_ids"] == [[40, 4096], [8, 4]]
