# Two commands: `make run` (the site with demo data) and `make test` (every check and test). Both need only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install lock run test lint typecheck migrations-check pytest bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-build.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements-build.txt
	$(PY) -m pip install -q --require-hashes --no-build-isolation -r requirements-dev.txt
	touch $@

# Translations: the .mo files are built from the committed .po catalogs (GNU gettext's msgfmt; docs/patients.md "Languages").
MO_FILES := $(patsubst %.po,%.mo,$(wildcard locale/*/LC_MESSAGES/*.po))
locale/%.mo: locale/%.po $(VENV)/.installed
	$(PY) manage.py compilemessages --ignore=.venv --settings=alma_billing.settings_test -v0

# Test-only checkers from package-lock.json (integrity hashes checked; .npmrc skips vnu-jar's Java download, the
# machine's java runs vnu.jar). Without npm the accessibility/HTML tests skip, or fail under ALMA_REQUIRE_SERVICES=1.
node_modules/.package-lock.json: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --ignore-scripts; \
	  else echo "npm not found: the axe-core and HTML-validator tests will skip (docs/accessibility.md)"; fi

install: $(VENV)/.installed $(MO_FILES) node_modules/.package-lock.json  ## create .venv, install the locked requirements (hashes checked), compile translations, npm ci the test checkers

# The lock files are generated: edit requirements.in / requirements-dev.in, then `make lock` (add
# LOCK_FLAGS=--upgrade to move every transitive pin to its newest version), then `make install`.
LOCK := $(VENV)/bin/uv pip compile --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(LOCK_FLAGS)
lock: install  ## regenerate the hashed lock files requirements*.txt from the requirements*.in files
	$(LOCK) requirements-build.in -o requirements-build.txt
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in -o requirements-dev.txt

run: install  ## migrate, seed demo data, start localstripe and the site on http://127.0.0.1:8000
	DEBUG=1 $(PY) manage.py migrate --no-input -v0
	DEBUG=1 $(PY) manage.py seed_demo
	@$(PY) -m payments.localstripe_server --port 8420 & ls_pid=$$!; \
	  trap 'kill $$ls_pid 2>/dev/null' EXIT INT TERM; \
	  echo "localstripe (Stripe fake) on http://127.0.0.1:8420; site on http://127.0.0.1:8000"; \
	  echo "admin logins and their second factor (one-time codes demo1..demo5) are printed above by seed_demo"; \
	  DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

lint:  ## ruff, and import-linter's layer and gateway contracts (pyproject.toml, docs/architecture.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck:  ## mypy with django-stubs
	$(VENV)/bin/mypy .

migrations-check:  ## fail when a model changed without a migration
	$(PY) manage.py makemigrations --check --dry-run --settings=alma_billing.settings_test

pytest:  ## the test suite (PostgreSQL/Redis/Chromium tests skip unless available, see docs/testing.md)
	$(PY) -m pytest

test: install lint typecheck migrations-check pytest  ## every check and test

# Every benchmark, one after another; each prints ratios against a baseline it measured in the same run.
BENCH_DB_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/postgres)
bench: install  ## every benchmark (PostgreSQL and Redis; wrk if installed); they print ratios
	DATABASE_URL=$(BENCH_DB_URL) $(PY) bench/pay_page.py --rounds 3
	DATABASE_URL=$(BENCH_DB_URL) $(PY) bench/template_engines.py
	DATABASE_URL=$(BENCH_DB_URL) $(PY) bench/issue_invoices.py
	DATABASE_URL=$(BENCH_DB_URL) $(PY) bench/issue_worker.py --n 500
	DATABASE_URL=$(BENCH_DB_URL) $(PY) bench/reminders.py --sizes 10000 100000 1000000

clean:  ## remove the venv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
