"""Fixtures of the op-backend tests: the CUDA backend and the reference backend it is checked against."""
import pytest


@pytest.fixture(scope="module")
def ops():
    from inference.ops.cuda import Ops
    return Ops()


@pytest.fixture(scope="module")
def ref():
    from inference.ops.reference import Ops
    return Ops()
