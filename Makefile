# The two README commands. torch is installed first, pinned, so that pip takes
# the CPU build and never resolves a multi-GB CUDA build through transformers.
PY ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0

$(VENV)/.base: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(VENV)/bin/pip install -q -e '.[dev,ray]'
	touch $@

setup: $(VENV)/.base

demo: $(VENV)/.base
	$(VENV)/bin/docpipe convert samples --out out/samples

test: $(VENV)/.dev
	$(VENV)/bin/python -m pytest -q --durations=15 tests

.PHONY: setup demo test
