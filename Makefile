# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
export FLASK_APP := shop

.PHONY: help install run test test-sqlite test-postgresql lint chromium bench clean

help:
	@echo "make run   - install, migrate, load the demo catalog and serve http://127.0.0.1:5000"
	@echo "make test  - install, lint, and run the whole suite on SQLite and on PostgreSQL"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's Chromium; install it when missing (needs root for apt-get).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing Debian's chromium for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing: run 'sudo apt-get install chromium' (needed by the browser tests)"; exit 1; \
	  fi; \
	fi

run: install
	mkdir -p "$${SHOP_INSTANCE_PATH:-instance}"
	$(BIN)/flask db upgrade
	$(BIN)/flask shop load-demo
	$(BIN)/python -m shop.devserver

lint: install
	$(BIN)/ruff check .

test-sqlite: install chromium
	SHOP_TEST_DB=sqlite $(BIN)/pytest

test-postgresql: install chromium
	SHOP_TEST_DB=postgresql $(BIN)/pytest

test: lint test-sqlite test-postgresql

bench: install
	$(BIN)/python bench/catalog_pages.py
	$(BIN)/python bench/checkout.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
