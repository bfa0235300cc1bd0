# Deep generative models: the notebooks and their helpers. `make help` lists the targets.
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
KERNEL    := python3
STAMP     := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
MIN_PYTHON := 3.11

.DEFAULT_GOAL := help
.PHONY: help setup run test check answers lab data lint clean distclean check-python colab

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing); this collection needs Python $(MIN_PYTHON) or newer."; \
	  echo "Install Python $(MIN_PYTHON)+ (python.org, your package manager, or conda), then run: make PYTHON=python3.11 setup"; \
	  exit 1; }

setup: check-python $(STAMP) ## create .venv with the pinned packages, helpers (editable) and the Jupyter kernel

# A .venv made by another interpreter (say 3.10, before a retry with 3.11) is replaced, not reused.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) tools/check_venv.py $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing the pinned packages (PyTorch with its CUDA libraries is about 6 GB: this takes a few minutes)"
	$(BIN)/python -m pip install --progress-bar on -r requirements.txt || { \
	  echo "error: installing the packages failed. If the environment is broken, run 'make distclean' and try again."; exit 1; }
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix  # the standard python3 kernel, run by this environment
	$(BIN)/python -c "import torch, torchvision, helpers; print('ready: torch', torch.__version__, '| torchvision', torchvision.__version__, '| CUDA' if torch.cuda.is_available() else '| CPU')"
	touch $@

check: setup ## check one notebook's answers, question by question: make check NB=03 (Q=A3: one question)
	@test -n "$(NB)" || { echo "usage: make check NB=03 [Q=A3]: the notebook's number, and a question's id for one"; \
	  exit 2; }
	@$(BIN)/python -m tools.check $(NB) $(Q)

answers: setup ## export the notebooks' answer cells to answers/*.py (later notebooks and the tests import them)
	$(BIN)/python -m answers.export

run: setup answers ## execute every notebook with full settings (committed outputs); a notebook changes only if it succeeds
	DGM_MODE=full $(BIN)/python -m tools.run_notebooks --kernel $(KERNEL) $(NOTEBOOKS)

# test processes: one per core, each with one torch thread (`make test TEST_THREADS=2`: two threads each); each test
# file runs in one of them, in the order collected (instructor/tests/conftest.py puts the longest first)
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(os.cpu_count() or 1)')
TEST_THREADS ?= 1

test: setup ## every test, and every notebook under nbval with quick settings (records go to .quick/)
	rm -rf .quick  # quick runs start from nothing, like CI: no stale checkpoint from older code
	DGM_MODE=quick DGM_DATA_SOURCE=embedded OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests $(wildcard instructor/tests) notebooks

lab: setup ## open Jupyter Lab on the notebooks
	$(BIN)/jupyter lab notebooks/

data: setup ## download full MNIST into data/MNIST/raw (needs the internet; verified by md5)
	$(BIN)/python -m helpers.data download

lint: setup ## ruff over the code and the notebooks
	$(BIN)/ruff check helpers answers tests tools notebooks $(wildcard instructor)

clean: ## remove quick-run outputs and caches (keeps .venv, data and full-run results)
	rm -rf .quick .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv (start again from `make setup`)
	rm -rf $(VENV) *.egg-info

colab: setup ## write pyproject's repository URL into every notebook's Colab cell and the README's links
	$(BIN)/python tools/colab.py

# Instructor targets (student, key, grade, gradebook, html): instructor/instructor.mk, not in the student release.
-include instructor/instructor.mk
