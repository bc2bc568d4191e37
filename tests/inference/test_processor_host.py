"""Processor split into host() (no device) and finish() (upload, patches):
the halves give what processor(request) gives, and the memoised layout of a
recurring prompt (same ids, same image sizes) equals a fresh computation and
hands out its own token list."""
import pytest
import torch

from inference.models.loader import load_config
from inference.processor import Processor
from inference.worker.mrope import prompt_positions
from qwen2vl_tiny import IMAGE, image_prompt, make_image


def _request(width, height, seed):
    return {"prompt_token_ids": image_prompt([5, 6], [7]), "images": [make_image(width, height, seed)]}


def test_host_then_finish_is_the_processor_and_recurring_prompts_are_laid_out_once(tiny_ckpt):
    proc = Processor(load_config(tiny_ckpt), tiny_ckpt, fast_patches=True)  # fast path on the CPU
    a, b, c = (proc.host(_request(112, 84, 0)), proc.host(_request(112, 84, 1)), proc.host(_request(56, 84, 2)))
    assert a.token_ids == b.token_ids and a.token_ids is not b.token_ids  # callers may keep or change their list
    assert a.positions is b.positions and c.positions.shape != a.positions.shape
    merge = proc.cfg.vision.spatial_merge_size
    for host in (a, c):  # memo or not: what prompt_positions gives for the expanded prompt
        want, delta = prompt_positions(host.token_ids, host.image_grid_thw, IMAGE, merge)
        assert torch.equal(host.positions, want) and host.rope_delta == delta
        assert host.image_token_index.tolist() == [i for i, t in enumerate(host.token_ids) if t == IMAGE]
    whole = proc(_request(112, 84, 1))
    split = proc.finish(proc.host(_request(112, 84, 1)))
    assert whole.token_ids == split.token_ids and whole.image_grid_thw == split.image_grid_thw == [(1, 6, 8)]
    assert torch.equal(whole.pixel_values, split.pixel_values) and whole.pixel_values.dtype == torch.float32
    slow = Processor(load_config(tiny_ckpt), tiny_ckpt, fast_patches=False)(_request(112, 84, 1))
    assert torch.allclose(slow.pixel_values, split.pixel_values, atol=1e-5)  # the checkpoint's processor
    assert slow.token_ids == split.token_ids and torch.equal(slow.positions, split.positions)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="off-thread finish queues its work on a CUDA upload stream")
def test_finish_on_another_thread_gives_the_same_pixels_once_adopted(tiny_ckpt):
    import threading

    from inference.processor import adopt

    proc = Processor(load_config(tiny_ckpt), tiny_ckpt, device="cuda", fast_patches=True)
    hosts = [proc.host(_request(112, 84, seed)) for seed in range(4)] + [proc.host(_request(56, 28, 9))]
    want = [proc.finish(h).pixel_values.clone() for h in hosts]
    got = []
    worker = threading.Thread(target=lambda: got.extend(proc.finish(h, off_thread=True) for h in hosts))
    torch.cuda._sleep(100_000_000)  # queued work on this stream: the upload stream must not wait for it
    worker.start()
    worker.join()
    assert all(p.ready is not None for p in got)
    for p, w in zip(got, want):
        adopt(p)  # this stream waits for the upload stream's work
        assert p.ready is None and torch.equal(p.pixel_values * 1, w)
