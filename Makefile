# `make run` and `make test` are the whole set-up: each creates the virtualenv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint format clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: this takes the local CPU build, not a multi-GB CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: install  ## Load the example articles, then serve on http://127.0.0.1:8000 (demo: /demo)
	$(BIN)/related ingest examples/articles.jsonl
	# Reads open to anonymous callers, as for a public frontend: the /demo page sends no key.
	RELATED_ANONYMOUS_READS=true $(BIN)/related serve

test: install  ## The whole test suite, on an embedded PostgreSQL + pgvector
	$(BIN)/pytest

lint: install  ## ruff (lint and format) and mypy on app/
	$(BIN)/ruff check app tests migrations bench
	$(BIN)/ruff format --check app tests migrations bench
	$(BIN)/mypy app

format: install
	$(BIN)/ruff format app tests migrations bench
	$(BIN)/ruff check --fix app tests migrations bench

clean:
	rm -rf $(VENV) .related-data .pytest_cache .mypy_cache .ruff_cache
