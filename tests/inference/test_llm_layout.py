"""LLM(layout=...): disaggregated layouts dispatch to DisaggLLM, embedded
layouts configure the in-process engine."""
import inference.disagg.llm as disagg_llm
from inference import LLM


def test_disaggregated_layout_returns_disagg_llm(monkeypatch):
    made = {}

    class FakeDisagg:
        def __init__(self, model, layout, **kw):
            made.update(model=model, layout=layout, kw=kw)

    monkeypatch.setattr(disagg_llm, "DisaggLLM", FakeDisagg)
    llm = LLM("dummy:tiny", layout="local-cpu-1p1d", num_kv_blocks=64)
    assert isinstance(llm, FakeDisagg)
    assert made == {"model": "dummy:tiny", "layout": "local-cpu-1p1d", "kw": {"num_kv_blocks": 64}}


def test_embedded_layout_configures_engine(tmp_path):
    path = tmp_path / "cpu.toml"
    path.write_text('[[workers]]\nrole = "embedded"\ndevice = "cpu"\ndtype = "float32"\nmode = "eager"\n'
                    'kv_block_size = 32\nmax_num_seqs = 8\n')
    llm = LLM("dummy:tiny", layout=str(path), num_kv_blocks=16)
    cfg = llm.config
    assert (cfg.device, cfg.mode, cfg.kv_block_size, cfg.max_num_seqs) == ("cpu", "eager", 32, 8)
    assert str(cfg.dtype) == "float32"
    out = llm.generate([{"prompt_token_ids": [1, 2, 3]}])[0]
    assert len(out.token_ids) >= 1
