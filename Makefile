# Two commands for a newcomer: `make run` (set up, then run the main job: the default continual-learning
# benchmark on the embedded tiny model) and `make test` (set up, then run the test suite; `make test-fast`
# leaves out the tests marked slow). Both create .venv on first use: torch 2.13.0 (CPU) first and on its
# own — an open torch range in a fresh environment pulls the multi-GB CUDA build — then mllmcl with exact pins.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run demo test test-fast bench pretrain clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(BIN)/mllmcl run

demo: setup
	$(BIN)/mllmcl demo

test: setup
	$(BIN)/python -m pytest -q

# the fast tier: every module, no test marked slow (`pytest -m "not slow"`), in about a minute on 2 cores
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/mllmcl bench engine

pretrain: setup
	$(BIN)/mllmcl pretrain

clean:
	rm -rf $(VENV) runs
