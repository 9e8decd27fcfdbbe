# Two commands on a fresh machine: `make run` and `make test`.
# Each sets up the local virtualenv it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-fast check build typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/publisher run

build: $(STAMP)
	$(BIN)/publisher build

check: $(STAMP)
	$(BIN)/publisher check briefs/

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The edit loop: no browser, nothing marked slow (the wheel, the service, crash tests).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser and not slow"

# Each script prints its own table; they take minutes (10,000-brief corpora, Hugo, nginx, node mjml, Postfix).
bench: $(STAMP)
	for b in build latency render send http ingest scale; do $(BIN)/python bench/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) public state .pytest_cache .mypy_cache
