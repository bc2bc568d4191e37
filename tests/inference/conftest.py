"""Session fixtures for engine tests: one tiny random Qwen2-VL checkpoint
saved with save_pretrained (plus an image processor) into a tmp dir."""
from __future__ import annotations

import pytest
import torch

from qwen2vl_tiny import build_hf_model, save_checkpoint

# The CI box has 2 shared cores: intra-op threads contend and slow tiny ops
# down ~1000x, so tests run torch single-threaded.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def hf_model():
    return build_hf_model()


@pytest.fixture(scope="session")
def tiny_ckpt(hf_model, tmp_path_factory) -> str:
    return save_checkpoint(hf_model, tmp_path_factory.mktemp("tiny_qwen2vl"))
