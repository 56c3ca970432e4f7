# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use and install the project into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest test-servers bench bench-quick clean

# First run only (and after pyproject.toml changes): pip says each package it fetches and
# installs, with its progress bar, rather than a silent minute.
$(STAMP): pyproject.toml
	@echo "==> Setting up $(VENV): a virtual environment with dhan-postback (editable) and its"
	@echo "    dependencies and test tools, as listed in pyproject.toml. This takes a minute once."
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	@echo "==> $(VENV) is ready: $$($(BIN)/dhan-postback --version)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dhan-postback demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) test-servers
	$(BIN)/pytest

# Programs some tests drive, from Debian's packages, installed only when missing and only as
# root (anyone else gets those tests skipped with a loud reason):
# - PostgreSQL: the PostgreSQL tests start a throwaway server from /usr/lib/postgresql/*/bin
#   (unless DHAN_POSTBACK_TEST_PG_URL names a server);
# - Chromium: the dashboard's browser tests.
test-servers:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  if [ -z "$$DHAN_POSTBACK_TEST_PG_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; \
	    then missing="$$missing postgresql"; fi; \
	  if ! [ -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	  if [ -n "$$missing" ]; then \
	    echo "installing for the tests:$$missing"; \
	    apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || echo "could not install$$missing: those tests will say why they skip"; \
	  fi; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
