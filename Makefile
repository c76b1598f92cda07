# Two entry points, both documented in README.md:
#   make serve   start the signer on its embedded defaults (emulated module, SQLite), dev mode
#   make test    run every check and the whole test suite
# and the contributors' inner loop: make test-fast (unit and property tests, no server, no
# external component, nothing marked slow; under a minute).
PYTHON ?= python3
DATA_DIR ?= ./dev-data
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: deps serve test test-fast lint

deps:
	@scripts/install-deps.sh

serve:
	@scripts/install-deps.sh --serve
	$(PYTHON) -m signer serve --dev --data-dir $(DATA_DIR)

# Tools run as modules of $(PYTHON): no dependence on console-script shims being on PATH.
lint:
	$(PYTHON) -m ruff check signer tests bench scripts
	$(PYTHON) -m ruff format --check signer tests bench scripts
	$(PYTHON) -m mypy
	$(PYTHON) -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'

# The suite runs on PYTEST_WORKERS pytest-xdist workers (CI's machine has 2 cores; much of the suite
# waits on servers, PostgreSQL and the Lodestar devnet). --dist loadfile: each test file runs whole, in
# order, on one worker, as in a serial run: a module-scoped fixture (a signer cluster, a server with
# a second factor) is set up once, not once per worker, and a module's tests see one another's state
# as they do serially. --no-loadscope-reorder: files go out in collection order, which
# tests/conftest.py starts with the longest (the Lodestar devnet); xdist would otherwise send the
# files with the most tests first and that one-test file last. make test-fast uses the same two
# workers (1,547 tests: 64 s in one process, 49 s on two); `python -m pytest FILE` runs in one process.
PYTEST_WORKERS ?= 2

test: deps lint
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast:
	$(PYTHON) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow and not integration and not e2e" tests/unit tests/property
