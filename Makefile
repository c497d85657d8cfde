# Two commands: `make run` and `make test`. Both build the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every install goes through uv.lock (exact versions and hashes), so a new release of a
# dependency cannot change what a fresh clone gets; `make lock` is the one way to move it.
UV_VERSION := 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | cksum | cut -d' ' -f1)
DEV := VIVA_SERVER_DEV_MODE=true

.PHONY: run test test-fast install lock lint format bench clean mutate

$(BIN)/uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Viva needs Python 3.11 or newer (set PYTHON=python3.X)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(BIN)/uv
	$(UV) sync --locked --extra dev --python $(BIN)/python --quiet
	@rm -f $(VENV)/.installed-* && touch $@

lock: | $(BIN)/uv
	$(UV) lock --upgrade

install: $(STAMP)

run: install
	$(DEV) $(BIN)/viva migrate
	$(DEV) $(BIN)/viva demo --if-empty
	$(DEV) $(BIN)/viva serve

# The suite runs on one worker per core (pytest-xdist), at most four: each worker has its own
# PostgreSQL database and SQLite files, and binds free ports, so tests never share state; past
# four, the longest single tests set the time. `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --maxprocesses 4

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_PARALLEL)

# Without the tests marked `slow` (media in real time, Chromium, subprocesses, property and
# crowd tests): a quick check while working; `make test` and CI run everything.
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/slots.py
	$(BIN)/python bench/booking.py

# Mutation testing of the security-relevant modules (not in CI; about half an hour on two
# cores). Configured under [tool.mutmut] in pyproject.toml; score in docs/security.md.
mutate: install
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache mutants
