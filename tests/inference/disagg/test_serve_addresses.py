"""`docpipe serve`: a layout with fixed ports maps to worker addresses the
router connects to; workers on port 0 are left to join by themselves; the
--worker option is checked."""
from __future__ import annotations

import pytest
import typer

from docpipe.commands.serve import parse_worker, worker_addresses
from inference.layouts import load_layout, parse_layout


def test_fixed_ports_give_one_address_per_worker():
    layout = load_layout("cluster-rdma")
    assert worker_addresses(layout) == [("prefill", "10.0.0.11:7100"), ("prefill", "10.0.0.12:7101"),
                                        ("decode", "10.0.0.21:7200"), ("decode", "10.0.0.22:7201")]


def test_port_zero_workers_are_left_to_join():
    layout = parse_layout({"workers": [{"role": "prefill"}, {"role": "decode", "port": 7000}]})
    assert worker_addresses(layout) == [("decode", "127.0.0.1:7000")]


@pytest.mark.parametrize("value", ["prefill:127.0.0.1:7000", "router=127.0.0.1:7000", "decode=127.0.0.1",
                                   "decode=:7000", "decode=host:http"])
def test_bad_worker_option_is_named(value):
    with pytest.raises(typer.BadParameter, match="--worker"):
        parse_worker(value)
    assert parse_worker("decode=10.0.0.2:7000") == ("decode", "10.0.0.2:7000")
