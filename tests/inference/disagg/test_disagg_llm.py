"""DisaggLLM construction: when the router cannot be reached after the
cluster started, the constructor stops the cluster before raising (no
worker or router process is left behind)."""
from __future__ import annotations

import pytest

from inference.disagg import llm as disagg_llm


class FakeCluster:
    instances: list["FakeCluster"] = []

    def __init__(self, model, layout, engine_kw=None, **kw):
        self.is_running = False
        FakeCluster.instances.append(self)

    def start(self) -> "FakeCluster":
        self.is_running = True
        return self

    def client(self):
        raise ConnectionRefusedError("router not listening")

    def stop(self) -> None:
        self.is_running = False


def test_failed_client_connection_stops_the_cluster(monkeypatch):
    monkeypatch.setattr(disagg_llm, "Cluster", FakeCluster)
    with pytest.raises(ConnectionRefusedError):
        disagg_llm.DisaggLLM("dummy:tiny", "local-cpu-1p1d")
    assert len(FakeCluster.instances) == 1 and not FakeCluster.instances[0].is_running
