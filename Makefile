# Deep generative models: the notebooks and their helpers. `make help` lists the targets.
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
KERNEL    := dgm-course
STAMP     := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.DEFAULT_GOAL := help
.PHONY: help setup run test bench lab data lint clean distclean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv with the pinned packages, helpers (editable) and the Jupyter kernel

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (deep generative models)"
	$(BIN)/python -c "import torch, torchvision, helpers; print('ready: torch', torch.__version__, '| torchvision', torchvision.__version__, '| CUDA' if torch.cuda.is_available() else '| CPU')"
	touch $@

run: setup ## execute every notebook with full settings, writing outputs, records and checkpoints
	DGM_MODE=full $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.kernel_name=$(KERNEL) $(NOTEBOOKS)

test: setup ## unit tests, then every notebook under nbval with quick settings (records go to .quick/)
	rm -rf .quick  # quick runs start from nothing, like CI: no stale checkpoint from older code
	DGM_MODE=quick DGM_DATA_SOURCE=embedded $(BIN)/python -m pytest

bench: setup ## training throughput (samples/s, FLOP/s against the device's matmul rate)
	$(BIN)/python -m helpers.bench

lab: setup ## open Jupyter Lab on the notebooks
	$(BIN)/jupyter lab notebooks/

data: setup ## download full MNIST into data/MNIST/raw (needs the internet; verified by md5)
	$(BIN)/python -m helpers.data download

lint: setup ## ruff over helpers, tests and notebooks
	$(BIN)/ruff check helpers tests notebooks

clean: ## remove quick-run outputs and caches (keeps .venv, data and full-run results)
	rm -rf .quick .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV) *.egg-info
