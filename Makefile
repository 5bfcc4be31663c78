# `make demo` and `make test` do all set-up on a fresh machine: a virtual environment in .venv,
# PyTorch first (TORCH, the CPU build by default; GPU users pass their CUDA build), then seq2seq.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install demo test lint bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet "$(TORCH)"
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(VENV)/bin/seq2seq prepare --config configs/multi30k_de_en.yaml

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/prepare_data.py
