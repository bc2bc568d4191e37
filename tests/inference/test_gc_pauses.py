"""gc_pauses.older_objects_frozen: collections inside the block skip the objects alive at its start and walk
them again after it; nothing is lost; LLM.generate runs inside it. GcPauses records the collector's pauses.
Freezing is process-wide, so each case runs in a fresh interpreter."""
from __future__ import annotations

import pytest

from fresh_python import run_fresh as _fresh
from inference import gc_pauses


@pytest.mark.parametrize("switch,skips", [(None, True), ("0", False)], ids=["default", "off"])
def test_block_skips_older_objects_and_gives_them_back(switch, skips):
    walked_inside, new_walked, count_inside, walked_after, count_after = _fresh("""
        import gc, json
        from inference.gc_pauses import older_objects_frozen
        old = [[i] for i in range(500)]  # lists: always tracked
        with older_objects_frozen():
            new = [[i] for i in range(500)]
            live = {id(o) for o in gc.get_objects()}
            inside = [sum(id(o) in live for o in old), sum(id(o) in live for o in new), gc.get_freeze_count()]
        live = {id(o) for o in gc.get_objects()}
        print(json.dumps(inside + [sum(id(o) in live for o in old), gc.get_freeze_count()]))
    """, **({} if switch is None else {gc_pauses.GC_FREEZE_ENV: switch}))
    assert new_walked == 500 and walked_after == 500 and count_after == 0
    assert (walked_inside == 0 and count_inside >= 500) if skips else (walked_inside == 500 and count_inside == 0)


def test_garbage_from_before_is_collected_after_the_block():
    inside, after = _fresh("""
        import gc, json, weakref
        from inference.gc_pauses import older_objects_frozen
        class Node: pass
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        ref = weakref.ref(a)
        del a, b
        with older_objects_frozen():
            gc.collect()
            inside = ref() is not None
        gc.collect()
        print(json.dumps([inside, ref() is not None]))
    """)
    assert inside is True and after is False


def test_nothing_changes_where_objects_are_frozen_already():
    before, inside, after = _fresh("""
        import gc, json
        from inference.gc_pauses import older_objects_frozen
        keep = [[i] for i in range(100)]
        gc.freeze()  # e.g. a role process's start-up
        before = gc.get_freeze_count()
        extra = [[i] for i in range(100)]
        with older_objects_frozen():
            inside = gc.get_freeze_count()
        print(json.dumps([before, inside, gc.get_freeze_count()]))
    """)
    assert inside == before and after == before  # not unfrozen at exit, and nothing newer frozen


def test_llm_generate_runs_with_older_objects_frozen():
    during, after, tokens = _fresh("""
        import gc, json
        from inference import LLM, SamplingParams
        llm = LLM(model="dummy:tiny", dtype="float32", device="cpu")
        seen = []
        step = llm.engine.step
        def spy():
            seen.append(gc.get_freeze_count())
            return step()
        llm.engine.step = spy
        out = llm.generate([{"prompt_token_ids": [1, 2, 3]}], SamplingParams(temperature=0, max_tokens=2))
        print(json.dumps([min(seen), gc.get_freeze_count(), len(out[0].token_ids)]))
    """)
    assert during > 0 and after == 0 and tokens == 2


def test_gc_pauses_records_a_full_collection():
    import gc

    with gc_pauses.GcPauses() as pauses:
        gc.collect()
    report = pauses.report()
    assert report["count_by_generation"][2] >= 1
    assert report["ms_by_generation"][2] > 0 and report["total_ms"] >= report["ms_by_generation"][2]
    assert pauses._callback not in gc.callbacks
