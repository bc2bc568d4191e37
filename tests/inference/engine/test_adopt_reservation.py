"""adopt_reservation: a decode-side reservation made for an upper bound of the
prompt becomes the request its landed KV describes, on the leading blocks; the
rest go back to the pool; more tokens than reserved are refused."""
import pytest

from inference import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0.0, ignore_eos=True, max_tokens=6, no_repeat_ngram_size=2)


def test_reservation_becomes_the_landed_request_on_its_leading_blocks():
    engine = LLM("dummy:tiny", dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=64, mode="eager").engine
    free = engine.block_manager.num_free_blocks
    reserved = engine.add_prefilled_request("r", 20, 0, 0, GREEDY)  # bound: 20 tokens, 5 blocks
    assert len(reserved) == 5 and engine.block_manager.num_free_blocks == free - 5
    engine.adopt_reservation("r", 9, 42, 3, GREEDY, list(range(100, 109)))  # 9 tokens landed: 3 blocks
    req = engine.awaiting_kv["r"]
    assert req.block_ids == reserved[:3] and engine.block_manager.num_free_blocks == free - 3
    assert req.prompt.token_ids == list(range(100, 109)) and req.prompt.rope_delta == 3
    assert req.num_computed_tokens == 9 and req.output_token_ids == [42]
    with pytest.raises(ValueError, match="exceed its reservation"):
        engine.adopt_reservation("r", 13, 42, 3, GREEDY)  # 4 blocks > the 3 it now holds
    engine.block_manager.check_invariants()
