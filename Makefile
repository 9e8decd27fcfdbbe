# Two commands on a fresh machine: `make run` and `make test`.
# Each sets up the local virtualenv it needs by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-fast check build typecheck bench clean native

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The parser and renderers compiled by mypyc into build/native (publisher/native.py):
# rebuilt only when a source changed, loaded only while they match the sources.
# NATIVE=0 skips it (no C compiler): everything runs as plain Python, more slowly.
NATIVE ?= 1
native: $(STAMP)
ifeq ($(NATIVE),1)
	@$(BIN)/python -m publisher.nativebuild build || { echo "make: the native build failed; 'make NATIVE=0 ...' runs plain Python" >&2; exit 1; }
endif

run: $(STAMP) native
	$(BIN)/publisher run

build: $(STAMP) native
	$(BIN)/publisher build

check: $(STAMP) native
	$(BIN)/publisher check briefs/

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) native
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The edit loop: no browser, nothing marked slow (the wheel, the service, crash tests).
test-fast: $(STAMP) native
	$(BIN)/python -m pytest -q -m "not browser and not slow"

# Each script prints its own table; they take minutes (10,000-brief corpora, Hugo, nginx, node mjml, Postfix).
bench: $(STAMP) native
	for b in build latency render send http ingest scale; do $(BIN)/python bench/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) public state .pytest_cache .mypy_cache build
