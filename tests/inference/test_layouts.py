from pathlib import Path

import pytest

from inference.layouts import LAYOUT_DIR, load_layout, parse_layout

SHIPPED = ["local-cpu-1p1d", "single-gpu", "gpu-prefill-cpu-decode", "gpu-1p1d", "gpu-1p1d-mps", "gpu-1p1d-mps-priority", "h200x2-1p1d", "cluster-rdma"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_layouts_load(name):
    layout = load_layout(name)
    assert layout.name == name
    if name == "single-gpu":
        assert not layout.is_disaggregated
    else:
        assert layout.role("prefill").role == "prefill" and layout.role("decode").role == "decode"


def test_every_file_is_listed():
    assert sorted(p.stem for p in LAYOUT_DIR.glob("*.toml")) == sorted(SHIPPED)


def test_loopback_unless_named():
    assert load_layout("local-cpu-1p1d").role("prefill").hosts == ["127.0.0.1"]
    assert load_layout("local-cpu-1p1d").router_host == "127.0.0.1"


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown keys.*'devcie'"):
        parse_layout({"workers": [{"role": "embedded", "devcie": "cuda"}]})


def test_roles_must_pair():
    with pytest.raises(ValueError, match="prefill and decode"):
        parse_layout({"workers": [{"role": "prefill"}]})


def test_bad_values():
    with pytest.raises(ValueError, match="dtype"):
        parse_layout({"workers": [{"role": "embedded", "dtype": "int4"}]})
    with pytest.raises(ValueError, match="power of two"):
        parse_layout({"workers": [{"role": "embedded", "kv_block_size": 24}]})
    with pytest.raises(ValueError, match="unknown transport"):
        parse_layout({"workers": [{"role": "embedded"}], "transfer": {"transport": "carrier-pigeon"}})


def test_missing_layout_lists_shipped(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="local-cpu-1p1d"):
        load_layout(tmp_path / "nope.toml")


def test_token_from_env(monkeypatch):
    layout = load_layout("cluster-rdma")
    monkeypatch.setenv("DOCPIPE_TOKEN", "s3cret")
    assert layout.auth_token() == "s3cret"


def test_transfer_tcp_streams_is_checked():
    base = {"workers": [{"role": "prefill"}, {"role": "decode"}]}
    assert parse_layout({**base, "transfer": {"transport": "tcp", "tcp_streams": 2}}).transfer.tcp_streams == 2
    assert parse_layout(base).transfer.tcp_streams is None
    for bad in (0, 65, "2"):
        with pytest.raises(ValueError, match="tcp_streams must be an int"):
            parse_layout({**base, "transfer": {"transport": "tcp", "tcp_streams": bad}})


@pytest.mark.parametrize("transfer, msg", [({"lease_s": float("inf")}, "lease_s"), ({"lease_s": 0}, "lease_s"),
                                           ({"lease_s": float("nan")}, "lease_s"), ({"lease_s": "30"}, "lease_s"),
                                           ({"max_inflight": 0}, "max_inflight"), ({"max_inflight": 2.5}, "max_inflight")])
def test_transfer_lease_and_inflight_are_checked_when_the_layout_is_read(transfer, msg):
    base = {"workers": [{"role": "prefill"}, {"role": "decode"}]}
    with pytest.raises(ValueError, match=msg):
        parse_layout({**base, "transfer": {"transport": "tcp", **transfer}})
