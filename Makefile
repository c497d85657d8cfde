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
.PHONY: test-js lint-js

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
	@$(MAKE) --no-print-directory test-js

# Without the tests marked `slow` (media in real time, Chromium, subprocesses, property and
# crowd tests): a quick check while working; `make test` and CI run everything.
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow"

# Every check that reads the code without running it, one line each (CI runs `make lint`).
# The type checker's scope and its strict modules are under [tool.mypy] in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@$(MAKE) --no-print-directory lint-js

# The room page's JavaScript (templates/static/room/, native ES modules): unit tests with
# Node's own runner in `make test`; `node --check` and eslint in `make lint`. Only these need
# Node (20.19 or newer): without it they are skipped with a message, so the quick start still
# needs only Python and make; under CI (CI=true or VIVA_REQUIRE_NODE=1) they are required.
# eslint comes from package-lock.json alone (`npm ci`), like Python's packages from uv.lock.
JS := $(wildcard templates/static/room/*.js) templates/static/viva.js eslint.config.js
NPM_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json | cksum | cut -d' ' -f1)
NODE_OR_SKIP = if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then \
	  if [ "$$CI" = true ] || [ "$$VIVA_REQUIRE_NODE" = 1 ]; then \
	    echo "make $@: Node 20.19 or newer is required here (CI) and was not found: $$(node --version 2>&1)" >&2; exit 1; fi; \
	  echo "make $@: SKIPPED, Node 20.19 or newer not found (install it to check the room page's JavaScript)"; exit 0; fi

test-js:
	@$(NODE_OR_SKIP); echo "node --test --test-reporter=spec tests/js/"; node --test --test-reporter=spec tests/js/

lint-js:
	@$(NODE_OR_SKIP); \
	for file in $(JS); do node --check $$file || exit 1; done; echo "node --check: $(words $(JS)) files"; \
	$(MAKE) --no-print-directory -s $(NPM_STAMP) && echo "eslint" && node_modules/.bin/eslint --max-warnings 0 templates/static tests/js eslint.config.js

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

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
	rm -rf node_modules
