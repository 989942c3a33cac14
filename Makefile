# Everything runs from a virtual environment this Makefile creates (.venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint fmt bench clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,dev,s3]'
	touch $@ $(VENV)/.installed-run

## demo: install runyard and run the end-to-end demo on SQLite
demo: $(VENV)/.installed-run
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

## browser: Debian's Chromium for the browser tests (installed with apt-get when root)
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
		|| (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null); \
	else echo "note: /usr/bin/chromium is missing; the browser tests will be skipped (sudo apt-get install chromium)"; fi

## test: install the test dependencies and run the whole suite (PostgreSQL and browser tests included)
test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

## test-fast: the suite without the slow stress tests
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto -m "not slow" $(PYTEST_ARGS)

## lint: ruff (lint and format check) and mypy (strict on src/)
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## fmt: format, sort imports and fix what ruff can fix
fmt: $(VENV)/.installed-test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

## bench: the registry, lifecycle, jobs, durability, web and query benchmarks (bench/README.md);
## as root the lifecycle one also archives onto a loop-mounted ext4 (a disk, not only tmpfs)
bench: $(VENV)/.installed-run
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/lifecycle.py $$(if [ "$$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then echo --loop-disk; fi)
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/durability.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
