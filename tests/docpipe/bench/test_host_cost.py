"""The host-cost harness (docpipe/bench/host_cost.py) on two pages: every page
converts, the stages add up to no more than the wall time, the result does not
depend on timing, and the bench's fast noise is noise_image's pixels."""
from __future__ import annotations

import zlib

import numpy as np
import torch

from docpipe.bench import host_cost
from docpipe.bench.pipeline_jobs import _noise
from docpipe.bench.workload import mineru_synthetic, totals
from inference.bench.synthetic import noise_image

torch.set_num_threads(1)  # 2 shared cores


def test_host_cost_two_pages():
    figures, pages = host_cost.run(2, seed=3, window=2)
    assert figures["failed_pages"] == 0 and len(pages) == 2
    assert figures["requests"] == totals(mineru_synthetic(2, 3))["requests"]
    stages = figures["stage_self_ms_per_page"]
    assert stages["processor"] > 0 and stages["decode"] > 0 and stages["fill_block"] > 0
    assert sum(stages.values()) <= figures["wall_ms_per_page"] * 1.01
    again, _ = host_cost.run(2, seed=3, window=1)  # another window: other timing, same pages
    assert again["result_sha256"] == figures["result_sha256"]
    other, _ = host_cost.run(2, seed=4, window=2)
    assert other["result_sha256"] != figures["result_sha256"]


def test_fast_noise_is_noise_image():
    for key, (w, h) in [((0, "synthetic", 1), (1036, 1036)), ((0, "synthetic", 2, 5), (896, 140)),
                        ((9,), (29, 3)), ((1,), (1, 1))]:
        want = noise_image(w, h, np.random.default_rng(zlib.crc32(repr(key).encode())))
        got = _noise(w, h, key)
        assert (got.mode, got.size, got.tobytes()) == (want.mode, want.size, want.tobytes())
