"""What a worker's engine is built with, per role (no engine is started)."""
from inference.disagg.worker import engine_config
from inference.layouts import load_layout


def test_decode_workers_capture_no_encoder_or_prefill_graphs_at_start():
    layout = load_layout("gpu-1p1d")
    prefill = engine_config("dummy:tiny", layout.role("prefill"))
    decode = engine_config("dummy:tiny", layout.role("decode"))
    assert prefill.precapture_graphs is True
    assert decode.precapture_graphs is False
    # an explicit override still wins
    assert engine_config("dummy:tiny", layout.role("decode"), precapture_graphs=True).precapture_graphs is True


def test_prefill_workers_capture_no_decode_graphs_at_start():
    layout = load_layout("gpu-1p1d")
    assert engine_config("dummy:tiny", layout.role("prefill")).precapture_decode is False
    assert engine_config("dummy:tiny", layout.role("decode")).precapture_decode is True
