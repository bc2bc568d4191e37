"""Role processes freeze what their start left alive (gc_pauses.freeze_startup_objects) before serving;
frozen() gives the objects back to the collector after its block."""
from __future__ import annotations

import pytest

from fresh_python import run_fresh as _in_fresh_interpreter
from inference import gc_pauses
from inference.disagg import process


@pytest.mark.parametrize("switch,frozen", [(None, True), ("0", False)], ids=["default", "off"])
def test_freeze_moves_live_objects_out_of_collection(switch, frozen):
    """In a fresh interpreter (a freeze is for the process's life): objects alive at the call are in the
    permanent generation afterwards, unless DOCPIPE_GC_FREEZE=0."""
    did, count, walked = _in_fresh_interpreter("""
        import gc, json, sys
        from inference.gc_pauses import freeze_startup_objects
        keep = [[i] for i in range(1000)]  # lists: always tracked (a dict of atomic values may not be)
        did = freeze_startup_objects()
        live = {id(o) for o in gc.get_objects()}  # what collections still walk
        print(json.dumps([did, gc.get_freeze_count(), sum(id(o) in live for o in keep)]))
    """, **({} if switch is None else {gc_pauses.GC_FREEZE_ENV: switch}))
    assert did is frozen
    assert (count >= 1000 and walked == 0) if frozen else (count == 0 and walked == 1000)


def test_run_worker_freezes_after_start_and_before_serving(monkeypatch):
    from inference.disagg import decode_worker

    order = []

    class FakeWorker:
        address, token, transfer_address = "127.0.0.1:1", b"t", ""

        def __init__(self, *args, **kwargs):
            order.append("built")

        def stop(self):
            pass

        def serve(self):
            order.append("serve")

    monkeypatch.setattr(decode_worker, "DecodeWorker", FakeWorker)
    monkeypatch.setattr(process, "freeze_startup_objects", lambda: order.append("freeze"))
    monkeypatch.setattr(process, "_publish", lambda *a: None)
    monkeypatch.setattr(process, "_on_signals", lambda stop: None)
    monkeypatch.setattr(process, "_prepare", lambda n: None)
    process.run_worker("decode", "dummy:tiny", "local-cpu-1p1d")
    assert order == ["built", "freeze", "serve"]


def test_frozen_gives_the_objects_back_after_its_block():
    inside, after = _in_fresh_interpreter("""
        import gc, json
        from inference.gc_pauses import frozen
        keep = [{"n": i} for i in range(1000)]
        with frozen():
            inside = gc.get_freeze_count()
        print(json.dumps([inside, gc.get_freeze_count()]))
    """)
    assert inside >= 1000 and after == 0
