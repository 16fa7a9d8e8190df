# darnet-pl — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PIN := $(VENV)/torch-pin.txt
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help install train test test-all lint format bench docs clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch goes in first and alone (a torch already in .venv, e.g. a user's CUDA build, is kept), then is pinned
# so that resolving the project's dependencies never replaces it.
$(PIN): | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	@$(PY) -c "import torch; print('torch==' + torch.__version__)" 2>/dev/null > $(PIN)
	@echo "torch pinned: $$(cat $(PIN))"

$(STAMP): pyproject.toml $(PIN)
	$(PY) -m pip install -q -c $(PIN) -e '.[dev,export,cluster,search,bundle,docs]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv (CPU torch unless one is there already) and install the package + dev tools

train: install ## train DARNet on the built-in synthetic phantoms on CPU (+experiment=smoke)
	$(PY) -m darnet_pl +experiment=smoke $(ARGS)

# pytest-xdist, one worker per logical CPU (TEST_WORKERS=0: none); the tests of a module go to one worker together
# (--dist loadscope: a module's shared runs are made once). The wall time is printed last, whatever the result.
TEST_WORKERS ?= logical
test: install ## run the test suite (fast tests + slow end-to-end CLI runs) on every core; prints its wall time
	@start=$$(date +%s); \
	$(PY) -m pytest -q -m "not smoke" -n $(TEST_WORKERS) --dist loadscope --durations=25 $(ARGS); status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s"; exit $$status

test-smoke: install ## train +experiment=smoke and check it learns (test macro AUC >= 0.95); minutes
	$(PY) -m pytest -q -m smoke $(ARGS)

test-fast: install ## run only the fast tests
	$(PY) -m pytest -q -m "not slow and not smoke" $(ARGS)

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

bench: install ## benchmarks, printed as JSON
	$(PY) -m darnet_pl.bench $(ARGS)

docs: install ## build the documentation site into site/ (mkdocs --strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean: ## remove run outputs (keeps .venv)
	rm -rf outputs multirun logs wandb site .pytest_cache .ruff_cache
