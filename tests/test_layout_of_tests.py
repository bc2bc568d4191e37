"""Test modules are imported by basename (no packages under tests/), and the
worker-pool tests pickle functions by module name into spawned processes:
two test files with one basename would shadow each other."""
from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in Path(__file__).parent.rglob("*.py") if p.name != "conftest.py")
    assert [n for n, c in names.items() if c > 1] == []
