"""`docpipe serve` maps a layout with fixed ports to worker addresses, and
refuses one that leaves ports to chance (the router could not find them)."""
from __future__ import annotations

import pytest
import typer

from docpipe.commands.serve import worker_addresses
from inference.layouts import load_layout, parse_layout


def test_fixed_ports_give_one_address_per_worker():
    layout = load_layout("cluster-rdma")
    assert worker_addresses(layout) == [("prefill", "10.0.0.11:7100"), ("prefill", "10.0.0.12:7101"),
                                        ("decode", "10.0.0.21:7200"), ("decode", "10.0.0.22:7201")]


def test_port_zero_is_refused():
    layout = parse_layout({"workers": [{"role": "prefill"}, {"role": "decode", "port": 7000}]})
    with pytest.raises(typer.BadParameter, match="fixed `port`"):
        worker_addresses(layout)
