"""ModelRunner's pending input tokens (async steps): the steady-decode slice copy and the
general per-request lookup must both feed each row the token its request sampled last step.

Runs async against sync steps on a batch whose composition changes (requests finish at
different steps, one keeps its logits rows), and checks that both paths of _fill_pending ran."""
import torch

import inference.worker.model_runner as model_runner
from inference import LLM, SamplingParams

PROMPTS = [list(range(5 + 2 * i, 17 + 3 * i)) for i in range(5)]


def _run(async_steps: bool, monkeypatch=None):
    engine = LLM("dummy:tiny", dtype="float32", device="cpu", kv_block_size=4, num_kv_blocks=96,
                 max_model_len=96, mode="eager", async_scheduling=async_steps).engine
    uploads = []
    if monkeypatch is not None:  # the general path uploads its row index; the slice copy uploads nothing
        real = model_runner.to_device
        monkeypatch.setattr(model_runner, "to_device", lambda *a, **k: uploads.append(1) or real(*a, **k))
    for i, prompt in enumerate(PROMPTS):
        params = SamplingParams(temperature=0, max_tokens=6 + 5 * i, ignore_eos=True, presence_penalty=0.5,
                                no_repeat_ngram_size=3, return_logits=i == 1)
        engine.add_request(str(i), {"prompt_token_ids": prompt}, params)
    fills = []
    fill = engine.runner._fill_pending
    engine.runner._fill_pending = lambda batch: (fills.append(bool(batch.pending_rows)), fill(batch))[1]
    outs = {}
    while engine.has_unfinished_requests():
        outs.update((o.request_id, o) for o in engine.step())
    return outs, sum(fills), len(uploads)


def test_pending_tokens_match_sync_steps_on_both_paths(monkeypatch):
    want, _, _ = _run(False)
    got, num_fills, num_general = _run(True, monkeypatch)
    assert 0 < num_general < num_fills  # both paths taken: lookups after a finish, slice copies between
    assert got.keys() == want.keys()
    for rid, out in want.items():
        assert got[rid].token_ids == out.token_ids, rid
        assert (got[rid].logits is None) == (out.logits is None), rid
    torch.testing.assert_close(got["1"].logits, want["1"].logits, rtol=0, atol=0)


def test_request_lists_compare_by_identity():
    # the runner and SamplerGraphs compare lists of Requests to find an unchanged batch: a C-level
    # identity pass only while Request keeps object's __eq__ (a field-wise one would be slow or raise)
    assert model_runner.Request.__eq__ is object.__eq__
