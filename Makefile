# The two commands of the README, and the virtual environment they share.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: up test lint
## up: start msgcenter on the embedded default (SQLite) and push a few demo events
up: $(VENV)/.installed
	$(VENV)/bin/msgcenter up --demo

## test: the whole test suite (SQLite and PostgreSQL)
test: $(VENV)/.installed
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
