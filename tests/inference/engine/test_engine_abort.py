"""Aborting and failed submissions leave the engine empty: no request left
running for a later call, no KV block held."""
import pytest

from inference import LLM, SamplingParams

GREEDY = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)


def _llm():
    return LLM("dummy:tiny", dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=20,
               max_model_len=64, mode="eager")


def test_abort_of_a_request_waiting_for_kv_frees_its_blocks():
    engine = _llm().engine
    free_before = engine.block_manager.num_free_blocks
    blocks = engine.add_prefilled_request("d", 10, 7, 0, GREEDY)
    assert engine.block_manager.num_free_blocks == free_before - len(blocks)
    engine.abort("d")
    assert engine.block_manager.num_free_blocks == free_before
    assert "d" not in engine.awaiting_kv
    engine.block_manager.check_invariants()


def test_generate_that_rejects_a_request_leaves_none_of_the_batch_behind():
    llm = _llm()
    too_long = {"prompt_token_ids": list(range(1, 80))}
    with pytest.raises(ValueError, match="max_model_len"):
        llm.generate([{"prompt_token_ids": [1, 2, 3]}, too_long], GREEDY)
    assert not llm.engine.has_unfinished_requests()
    assert llm.engine.block_manager.num_free_blocks == llm.engine.block_manager.num_blocks
