"""InputBatchBuilder's packed upload: every field starts 16-byte aligned (Triton
specialises kernels on pointer alignment) and holds the values the step needs."""
import types

import numpy as np
import torch

from inference.engine.scheduler import ScheduledRequest, SchedulerOutput
from inference.worker.input_batch import InputBatchBuilder


def _request(rid: str, prompt: int, computed: int, block_size: int):
    r = types.SimpleNamespace(request_id=rid, num_prompt_tokens=prompt, num_tokens=prompt,
                              num_computed_tokens=computed, num_pending=0)
    r.block_ids = list(range(100 * int(rid), 100 * int(rid) + -(-prompt // block_size)))
    r.token_buffer = np.arange(1000 * int(rid), 1000 * int(rid) + prompt, dtype=np.int64)
    r.prompt = types.SimpleNamespace(rope_delta=0, positions=torch.arange(3 * prompt).view(3, prompt),
                                     image_token_index=None)
    return r


def test_fields_are_aligned_and_hold_the_batch():
    block_size = 4
    builder = InputBatchBuilder(block_size, torch.device("cpu"))
    # odd token counts and an odd number of sequences: unpadded fields would start at odd words
    reqs = [_request("1", 7, 0, block_size), _request("2", 5, 2, block_size), _request("3", 9, 4, block_size)]
    batch = builder.build(SchedulerOutput(scheduled=[ScheduledRequest(r, r.num_prompt_tokens - r.num_computed_tokens)
                                                     for r in reqs]))
    m = batch.meta
    fields = [batch.input_ids, batch.positions, batch.logits_indices, m.slot_mapping, m.block_tables, m.seq_lens_k,
              m.cu_seqlens_q]
    assert all(t.data_ptr() % 16 == 0 for t in fields)
    assert batch.input_ids.tolist() == list(range(1000, 1007)) + [2002, 2003, 2004] + list(range(3004, 3009))
    assert m.cu_seqlens_q.tolist() == [0, 7, 10, 15] and m.seq_lens_k.tolist() == [7, 5, 9]
    assert batch.logits_indices.tolist() == [6, 9, 14]
    assert m.block_tables.tolist() == [[100, 101, 0], [200, 201, 0], [300, 301, 302]]
    assert m.slot_mapping[7:10].tolist() == [200 * block_size + 2, 200 * block_size + 3, 201 * block_size + 0]
    assert batch.positions.shape == (3, 15) and batch.positions[0, :7].tolist() == list(range(7))
