# Set-up and the two main jobs. Each target creates its own virtual environment with the CPU build of torch.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: venv demo test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv  ## the main job: upscale a sample image with the bundled weights (replaces its own subpixel_demo.png)
	$(VENV)/bin/subpixel demo --force
	@echo "the command line is $(VENV)/bin/subpixel (or: source $(VENV)/bin/activate, then subpixel --help)"

test: venv  ## the default test run (slow tests excluded)
	$(PY) -m pytest -m "not slow" -q

test-all: venv  ## every test, slow ones included (CI runs these too)
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
