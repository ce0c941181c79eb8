# `make demo`: set up and answer questions about the shipped sample images with the default model.
# `make test`: set up and run the test suite. Both create .venv and install everything they need, at the exact
# versions of requirements/lock.txt (the versions the suite last passed with); `make lock` refreshes that lock.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
TORCH := $(shell sed -n 's/^torch==\([^ ;]*\).*/\1/p' $(LOCK))
UV := uv==0.13.9

.PHONY: setup demo test test-slow lint lock clean

setup: $(STAMP)

# torch first, at the locked version: a machine with an NVIDIA GPU gets PyPI's (CUDA) build; a CPU machine the
# CPU wheel from its local wheels (pip's find-links; seconds), else from PyTorch's CPU index. Then the project with the
# lock as constraints (pip installs exactly the locked version of everything it installs), built without
# isolation against the locked setuptools; then the check that the environment equals the lock.
$(STAMP): pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install -q -c $(LOCK) "torch==$(TORCH)"; \
	elif ! $(PIP) install -q --no-index --no-deps "torch==$(TORCH)" 2>/dev/null; then \
		$(PIP) install -q -c $(LOCK) --extra-index-url https://download.pytorch.org/whl/cpu "torch==$(TORCH)"; \
	fi
	$(PIP) install -q -c $(LOCK) setuptools
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e ".[dev]"
	# lmms-eval without its own requirements (unsatisfiable beside nvila: av<16, torchvision); the dev extra
	# (nvila[lmms]) brought what its evaluator imports, so `lmms-eval --model nvila` runs (docs/evaluation.md)
	$(PIP) install -q --no-deps "lmms-eval==0.7.3"
	$(PY) scripts/check_lock.py $(LOCK)
	touch $(STAMP)

# Two held-out synthetic images of data/synth-small (the first document, and a line chart) with question types
# the small model answers well: a line's first word, counting and colours (docs/results.md); the true answer is
# printed first.
demo: setup
	@echo "sample_document.png: What is the first word of line 5? (true answer: chest)"
	@$(VENV)/bin/nvila generate --image src/nvila/resources/sample_document.png \
		--prompt "What is the first word of line 5?"
	@echo "sample_document.png: How many lines of text are below the title? (true answer: 9)"
	@$(VENV)/bin/nvila generate --image src/nvila/resources/sample_document.png \
		--prompt "How many lines of text are below the title?"
	@echo "sample_chart.png: What colour is the line? (true answer: yellow)"
	@$(VENV)/bin/nvila generate --image src/nvila/resources/sample_chart.png --prompt "What colour is the line?"

test: setup
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -q

# The tests marked slow (minutes: the GPU acceptance command's CPU dry run, lmms-eval's real CLI); CI runs them too.
test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

# Refresh the lock to the newest releases today (torch stays at requirements/pins.in's pin), reinstall, and run
# the suite against them. Commit requirements/lock.txt only when the suite passes (README, "Dependencies").
lock: setup
	$(PIP) install -q "$(UV)"
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet pyproject.toml requirements/pins.in --extra dev \
		--universal --python-version 3.11 --upgrade --exclude-newer "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" -o $(LOCK)
	$(MAKE) test

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
