"""Decode role admissions wait for the launched step only when they need to:
a block handed to add_prefilled_request that was freed after the launched
step's launch may still be written by it (wait); blocks that were free at
its launch are not in it (no wait). Tokens stay those of the colocated run."""
from inference import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0.0, ignore_eos=True, max_tokens=6)


def _engine():
    return LLM("dummy:tiny", dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=64, mode="eager",
               async_scheduling=True).engine  # the wait exists for async steps (a step in flight)


def _count_waits(engine) -> list:
    waits = []
    wait = engine.wait_inflight
    engine.wait_inflight = lambda: (waits.append(1), wait())[1]
    return waits


def test_no_wait_for_blocks_free_at_the_launch():
    engine = _engine()
    waits = _count_waits(engine)
    engine.add_request("a", {"prompt_token_ids": [3, 4, 5, 6, 7]}, GREEDY)
    engine.step()
    engine.step()  # a step in flight; nothing freed since its launch
    assert engine._inflight is not None
    engine.add_prefilled_request("d", 8, 9, 0, GREEDY)
    assert waits == []


def test_waits_when_a_block_freed_after_the_launch_is_handed_out():
    engine = _engine()
    waits = _count_waits(engine)
    short = SamplingParams(temperature=0.0, max_tokens=2, ignore_eos=True)
    engine.add_request("long", {"prompt_token_ids": [3, 4, 5, 6, 7]}, SamplingParams(temperature=0.0, max_tokens=40,
                                                                                     ignore_eos=True))
    engine.add_request("short", {"prompt_token_ids": [3, 4, 5, 6, 7]}, short)
    for _ in range(50):  # until "short" finishes: freed after the launch of the step now in flight
        if engine.step():
            break
    assert engine._inflight is not None  # "long" keeps a step in flight
    freed = engine.block_manager.free_blocks
    assert engine.block_manager.freed_since(list(freed)[-2:], engine._inflight_epoch)
    # take every free block, so the ones freed just now are among them
    tokens = engine.block_manager.num_free_blocks * engine.block_manager.block_size - GREEDY.max_tokens
    engine.add_prefilled_request("d", tokens, 9, 0, GREEDY)
    assert waits == [1]
    engine.abort("d")
    outs = []
    for _ in range(100):
        if not engine.has_unfinished_requests():
            break
        outs += engine.step()
    assert [o.request_id for o in outs] == ["long"]
    engine.block_manager.check_invariants()
