"""One local Ray instance per test module that asks for it (2 CPUs, no
dashboard); imported lazily so the Ray-free tests here run without the extra."""
import pytest


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
