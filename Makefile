# Coreset Studio: the two set-up commands of the README.
#   make run   create .venv if missing, install, start the app with the demo dataset preloaded
#   make test  create .venv if missing, install (Debian's chromium too, for the browser
#              test), run `make lint`, then the whole test suite
#   make lint       ruff (lint and format check) on the tree, mypy on core/
#   make test-fast  the suite without the browser and slow tests (a few minutes at most)
#   make demo  the headless pipeline on the demo dataset (load -> embed -> select)
# Each installs what it needs by itself: torch and torchvision first, pinned (TORCH_SPEC),
# then the project with a constraints file holding that torch, so nothing pulls another.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
OUT        ?= out/demo
PORT       ?= 8501
CHROMIUM   ?= /usr/bin/chromium

.PHONY: install run demo lint test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -c "from importlib.metadata import version as v; print(f'torch=={v(\"torch\")}\ntorchvision=={v(\"torchvision\")}')" > $(VENV)/torch-constraints.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)

run: $(STAMP)
	@echo "Coreset Studio: http://localhost:$(PORT)  (demo dataset preloaded; Ctrl+C stops it)"
	$(VENV)/bin/streamlit run app/main.py --server.port $(PORT)

demo: $(STAMP)
	$(VENV)/bin/coreset-studio demo --out $(OUT)

# The browser test drives the app in Debian's Chromium (Playwright never downloads a browser
# here); install it when missing, as root, or say how.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "The browser test needs Debian's chromium at $(CHROMIUM): run 'sudo apt-get install chromium'" >&2; exit 1; \
	fi

# Lint: ruff's rules and formatting (pyproject [tool.ruff]), mypy on the library ([tool.mypy]).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy core

test: lint $(CHROMIUM)
	$(PY) -m pytest

# The quick tier: no browser, no test marked slow (pyproject [tool.pytest.ini_options] markers).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

bench: $(STAMP)
	$(PY) bench/select_speed.py
	$(PY) bench/embed_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache out
