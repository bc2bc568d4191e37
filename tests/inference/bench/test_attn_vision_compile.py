"""attn_vision_compile names the kernel's pointer element types as Triton does for a tensor of the
dtype the launcher gets (inference.config.DTYPES), for every spelling of a dtype name."""
import pytest
import torch

pytest.importorskip("triton", reason="the compile check builds Triton signatures")

from inference.bench import attn_vision_compile  # noqa: E402
from inference.config import DTYPES  # noqa: E402
from inference.ops.cuda.vision_flash import DEFAULT_CONFIG, FlashConfig  # noqa: E402

TRITON_ELEM = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}  # Triton's type names


class _Captured(Exception):
    pass


def _signature(monkeypatch, config: FlashConfig, dtype: str) -> dict:
    """The signature compile_stats hands triton.compile (stopped there: no compile)."""
    def capture(src, target, options):
        raise _Captured(src.signature)
    monkeypatch.setattr(attn_vision_compile.triton, "compile", capture)
    with pytest.raises(_Captured) as caught:
        attn_vision_compile.compile_stats(config, head_dim=80, dtype=dtype, arch=90)
    return caught.value.args[0]


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_pointer_and_descriptor_elements_follow_the_dtype(monkeypatch, name):
    elem = TRITON_ELEM[DTYPES[name]]
    plain = _signature(monkeypatch, FlashConfig(128, 64, 4, 3), name)
    assert plain["q0_src"] == plain["o_ptr"] == f"*{elem}"
    tma = _signature(monkeypatch, FlashConfig(128, 64, 4, 3, True), name)
    assert tma["q0_src"] == f"tensordesc<{elem}[128, 64]>" and tma["k1_src"] == f"tensordesc<{elem}[64, 16]>"
    assert tma["o_ptr"] == f"*{elem}" and tma["cu_ptr"] == "*i32"


def test_unknown_dtype_name_is_refused(monkeypatch):
    with pytest.raises(KeyError):
        _signature(monkeypatch, DEFAULT_CONFIG, "int8")
