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
	$(PYTHON) -m pip install --quiet -e '.[dev,serve,export]'
	touch $@

# The main job: train the reference model on Multi30k de->en under a time budget and print test
# BLEU (configs/demo.yaml: 7.5 minutes and test BLEU 29.8-31.1 on 2 CPU cores, README).
demo: install
	$(PYTHON) train.py fit --config configs/multi30k_de_en.yaml --config configs/demo.yaml

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/prepare_data.py
	$(PYTHON) bench/model_step.py
	$(PYTHON) bench/train_throughput.py
	$(PYTHON) bench/allocator.py
	$(PYTHON) bench/gradient_health.py
	$(PYTHON) bench/compiled_cell.py
