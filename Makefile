# The two README commands. torch is installed first, pinned, so that pip takes
# the CPU build and never resolves a multi-GB CUDA build through transformers.
PY ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0

$(VENV)/.ok: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.ok

demo: setup
	$(VENV)/bin/docpipe convert samples --out out/samples

test: setup
	$(VENV)/bin/python -m pytest -q -x --durations=15 tests

.PHONY: setup demo test
