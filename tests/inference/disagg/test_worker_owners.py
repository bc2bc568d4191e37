"""A worker's reply routes (request id -> channel) stay bounded on long runs."""
from inference.disagg.worker import remember_owner


def test_routes_are_bounded_and_the_oldest_goes_first():
    owners: dict = {}
    for i in range(10):
        remember_owner(owners, f"r{i}", f"ch{i}", limit=4)
    assert list(owners) == ["r6", "r7", "r8", "r9"]


def test_a_request_asked_again_takes_the_new_channel_and_becomes_the_newest():
    owners: dict = {}
    for i in range(3):
        remember_owner(owners, f"r{i}", "a", limit=3)
    remember_owner(owners, "r0", "b", limit=3)  # a retry on another connection
    remember_owner(owners, "r3", "a", limit=3)  # r1, now the oldest, goes
    assert owners == {"r2": "a", "r0": "b", "r3": "a"}
