# Developer tasks for zasync.  `make help` lists them.
# Every target installs what it needs into .venv first, so each works on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test test-fast test-zope lint docs check clean

help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "zasync needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## Run the demonstration workload on an embedded FileStorage file
	$(BIN)/python -m zasync.demo

test: $(STAMP)  ## Run the whole test suite (installs Debian's chromium and PostgreSQL if missing)
	@bash .ci/browser-deps
	@bash .ci/postgres-deps
	$(BIN)/python -m pytest --cov --cov-report=term
	$(MAKE) test-zope

# The Zope tier runs in an environment of its own, with Zope at the versions of
# zope-constraints.txt: Zope pins libraries the main environment need not share.
ZOPE_VENV := var/zope-venv
ZOPE_STAMP := $(ZOPE_VENV)/.installed

$(ZOPE_STAMP): pyproject.toml zope-constraints.txt
	$(PYTHON) -m venv $(ZOPE_VENV)
	$(ZOPE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ZOPE_VENV)/bin/python -m pip install --quiet -c zope-constraints.txt -e '.[zope,test]'
	@touch $(ZOPE_STAMP)

test-zope: $(ZOPE_STAMP)  ## Run the Zope tier: zasync inside real Zope 6 instances
	$(ZOPE_VENV)/bin/python -m pytest tests/zope

test-fast: $(STAMP)  ## Run the unit tier only (well under a minute)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)  ## ruff (lint and format), mypy, import layers, and the docs site (warnings fail)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(CURDIR)/var/docs-lint-site

docs: $(STAMP)  ## Build the documentation site into site/ (open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

check: lint test  ## Everything CI runs

clean:  ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
