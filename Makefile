# `make demo`: set up and answer questions about the shipped sample images with the default model.
# `make test`: set up and run the test suite. Both create .venv and install everything they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

# CPU-only machines get the CPU wheel torch==2.13.0 (served locally, seconds); machines with an NVIDIA GPU
# get the default (CUDA) build within the range pyproject allows.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q "torch>=2.4,<3"; \
	else \
		$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q "torch>=2.4,<3"; \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	# lmms-eval without its own requirements (unsatisfiable beside nvila: av<16, torchvision); the dev extra
	# (nvila[lmms]) brought what its evaluator imports, so `lmms-eval --model nvila` runs (docs/evaluation.md)
	$(PY) -m pip install -q --no-deps "lmms-eval==0.7.3"
	touch $(STAMP)

# Two held-out synthetic images of data/synth-small (the first document, and a line chart) with a question type
# the small model answers well: counting and colours (docs/results.md); the true answer is printed first.
demo: setup
	@echo "sample_document.png: How many lines of text are below the title? (true answer: 9)"
	@$(VENV)/bin/nvila generate --image src/nvila/resources/sample_document.png \
		--prompt "How many lines of text are below the title?"
	@echo "sample_chart.png: What colour is the line? (true answer: yellow)"
	@$(VENV)/bin/nvila generate --image src/nvila/resources/sample_chart.png --prompt "What colour is the line?"

test: setup
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
