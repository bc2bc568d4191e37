"""gc_pauses.GcPauses records the collector's pauses (count and time by generation) while installed."""
from __future__ import annotations

from inference import gc_pauses


def test_gc_pauses_records_a_full_collection():
    import gc

    with gc_pauses.GcPauses() as pauses:
        gc.collect()
    report = pauses.report()
    assert report["count_by_generation"][2] >= 1
    assert report["ms_by_generation"][2] > 0 and report["total_ms"] >= report["ms_by_generation"][2]
    assert pauses._callback not in gc.callbacks
