# The two commands of the README, and the virtual environment they share.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: up test test-fast typecheck lint vendor screenshots
## up: start msgcenter on the embedded default (SQLite) and push a few demo events
##     (make up ARGS="--port 9080 --control-port 9081 --smtp-port 2526" moves it)
up: $(VENV)/.installed
	$(VENV)/bin/msgcenter up --demo $(ARGS)

## test: the type check, then the whole test suite (SQLite and PostgreSQL, every tier): the
##       in-process tests four at a time, then the slow ones (real processes) one at a time
test: typecheck
	$(VENV)/bin/pytest -m "not slow" -n 4
	$(VENV)/bin/pytest -m slow

## test-fast: the unit tests and the integration tests of the main paths (intake, processing,
##            every channel and its late outcomes, the console over HTTP) on SQLite, four at a
##            time: under a minute. `make test` runs every test.
FAST_INTEGRATION = rest_intake soap_intake processing_email processing_outcomes sms push \
	fallback mirror webhooks bounces console_http
test-fast: $(VENV)/.installed
	MSGCENTER_TEST_STORES=sqlite $(VENV)/bin/pytest -m "not slow" -n 4 tests/unit \
		$(FAST_INTEGRATION:%=tests/integration/test_%.py)

## screenshots: run the console's browser journeys and keep the shots docs/console.md shows
screenshots: $(VENV)/.installed
	MSGCENTER_DOC_SCREENSHOTS=1 MSGCENTER_TEST_STORES=sqlite $(VENV)/bin/pytest -q tests/browser

## typecheck: mypy, strict on src/ (settings in pyproject.toml)
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

## vendor: fetch the console's front-end files from the npm registry (pinned; committed)
vendor:
	scripts/vendor-assets.sh $(HTMX) $(CHARTJS) $(SWAGGER_UI)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
