# One command surface for people and CI.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --disable-pip-version-check -q

.PHONY: install install-test run up lint types test check bench

install:  ## the package and the `o11n` command
	$(PIP) -e .

install-test:  ## the package plus what the tests, linters and benchmarks need
	$(PIP) -e '.[test]'

run: install  ## a scheduler on ./.o11n (SQLite)
	o11n server

up: install  ## a scheduler and one local worker per core, on ./.o11n
	o11n up

lint:
	ruff check o11n tests benchmarks
	ruff format --check o11n tests benchmarks

types:
	mypy

test: install-test  ## install what the tests need, then run them all
	$(PYTHON) -m pytest

check: install-test lint types  ## lint, types and tests
	$(PYTHON) -m pytest

bench: install-test  ## every benchmark; each prints one JSON object
	$(PYTHON) -m benchmarks.dispatch
	$(PYTHON) -m benchmarks.fairness
	$(PYTHON) -m benchmarks.submit
	$(PYTHON) -m benchmarks.e2e
	$(PYTHON) -m benchmarks.containers
	$(PYTHON) -m benchmarks.reapi
