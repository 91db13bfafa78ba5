# Two commands: `make run` (the site with demo data) and `make test` (every check and test). Both need only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run test lint typecheck migrations-check pytest bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install the pinned requirements

run: install  ## migrate, seed demo data, start localstripe and the site on http://127.0.0.1:8000
	DEBUG=1 $(PY) manage.py migrate --no-input -v0
	DEBUG=1 $(PY) manage.py seed_demo
	@$(PY) -m payments.localstripe_server --port 8420 & ls_pid=$$!; \
	  trap 'kill $$ls_pid 2>/dev/null' EXIT INT TERM; \
	  echo "localstripe (Stripe fake) on http://127.0.0.1:8420; site on http://127.0.0.1:8000"; \
	  DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

lint:  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:  ## mypy with django-stubs
	$(VENV)/bin/mypy .

migrations-check:  ## fail when a model changed without a migration
	$(PY) manage.py makemigrations --check --dry-run --settings=alma_billing.settings_test

pytest:  ## the test suite (PostgreSQL/Redis/Chromium tests skip unless available, see README)
	$(PY) -m pytest

test: install lint typecheck migrations-check pytest  ## every check and test

bench: install  ## benchmarks (need DATABASE_URL on PostgreSQL); they print ratios
	$(PY) bench/issue_invoices.py

clean:  ## remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
