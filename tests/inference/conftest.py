"""Session fixtures for engine tests: one tiny random Qwen2-VL checkpoint
saved with save_pretrained (plus an image processor) into a tmp dir."""
from __future__ import annotations

import pytest

from qwen2vl_tiny import build_hf_model, save_checkpoint


@pytest.fixture(scope="session")
def hf_model():
    return build_hf_model()


@pytest.fixture(scope="session")
def tiny_ckpt(hf_model, tmp_path_factory) -> str:
    return save_checkpoint(hf_model, tmp_path_factory.mktemp("tiny_qwen2vl"))
