# Coreset Studio: the two set-up commands of the README.
#   make run   create .venv if missing, install, run the main job on the demo dataset
#   make test  create .venv if missing, install, run the whole test suite
# Each installs what it needs by itself: torch and torchvision first, pinned (TORCH_SPEC),
# then the project with a constraints file holding that torch, so nothing pulls another.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
OUT        ?= out/demo

.PHONY: install run demo test bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -c "from importlib.metadata import version as v; print(f'torch=={v(\"torch\")}\ntorchvision=={v(\"torchvision\")}')" > $(VENV)/torch-constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)

run: demo

demo: $(STAMP)
	$(VENV)/bin/coreset-studio demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/select_speed.py
	$(PY) bench/embed_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache out
