# askd-ref: `make test` and `make demo` work on a fresh clone; both install what they need.
#
# A virtual environment is created in .venv unless one is already active. torch is pinned to
# the CPU build that lies on the development and CI machines (TORCH_SPEC); elsewhere override
# it, e.g. `make test TORCH_SPEC=torch` for whatever build suits the machine.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
BIN := $(VENV)/bin
BASE_STAMP := $(VENV)/.askd-ref-base
DEV_STAMP := $(VENV)/.askd-ref-dev

.PHONY: install install-base test test-slow lint typecheck demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime dependencies only: all that `make demo` needs.
$(BASE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.1"
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -c "import askd_ref, torch, transformers"
	touch $(BASE_STAMP)

# Plus the dev extra: test, lint and type-check tools, and the peers the benchmarks compare with.
$(DEV_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Liger-Kernel's chunked losses run on CPU; --no-deps keeps its triton requirement out.
	$(BIN)/python -m pip install --quiet --no-deps "liger-kernel==0.8.5"
	$(BIN)/python -c "import pytest, hypothesis, mypy, trl"
	touch $(DEV_STAMP)

install-base: $(BASE_STAMP)

install: $(DEV_STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict askd_ref proofs

test: install lint typecheck
	$(BIN)/python -m pytest -q -m "not slow and not heavy"

test-slow: install
	$(BIN)/python -m pytest -q -m "slow or heavy"

demo: install-base
	$(BIN)/askd demo --out runs/demo

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis
