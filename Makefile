# `make run` and `make test` are the whole set-up: each creates the virtualenv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Every package at the version and hash the lock gives (torch: the CPU build's file, 2.13.0+cpu).
LOCK := requirements.lock
# uv installs the lock in seconds where pip, fetching one file at a time, takes minutes; uv
# reads no pip configuration, so it is told where pip finds torch's CPU build on this machine.
UV_VERSION := 0.13.8
FIND_LINKS = $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
# pip-tools, in a virtualenv of its own, only for `make lock`.
LOCK_TOOLS := .venv-lock
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-find-links --no-emit-index-url --no-emit-trusted-host

.PHONY: install lock run test lint format clean

$(INSTALLED): $(LOCK) requirements-uv.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-uv.lock
	# The lock, every file hash-checked, by uv; by pip if uv cannot (it fetches the same files).
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r $(LOCK) \
		$(foreach links,$(FIND_LINKS),--find-links $(links)) \
		|| $(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	# The project itself, editable, built with the lock's setuptools (nothing fetched unhashed).
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(INSTALLED)

install: $(INSTALLED)

# Rewrites the two lock files from pyproject.toml: a changed or added dependency is resolved,
# every other pin is kept; `make lock UPGRADE=1` moves every pin to its newest release.
# requirements.lock: what make and CI install (the dev, embedded, eval and onnx extras);
# requirements-image.lock: what the container image installs (the onnx extra only);
# requirements-uv.lock: the installer make uses (UV_VERSION).
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || \
		($(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.6.2)
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --extra dev --extra embedded --extra eval \
		--extra onnx -o requirements.lock pyproject.toml
	$(PIP_COMPILE) $(if $(UPGRADE),--upgrade) --extra onnx -o requirements-image.lock pyproject.toml
	echo "uv==$(UV_VERSION)" | $(PIP_COMPILE) -o requirements-uv.lock -

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
	rm -rf $(VENV) $(LOCK_TOOLS) .related-data .pytest_cache .mypy_cache .ruff_cache
