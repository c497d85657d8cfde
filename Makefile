# Two commands: `make run` and `make test`. Both build the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
DEV := VIVA_SERVER_DEV_MODE=true

.PHONY: run test install lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Viva needs Python 3.11 or newer (set PYTHON=python3.X)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: install
	$(DEV) $(BIN)/viva migrate
	$(DEV) $(BIN)/viva demo --if-empty
	$(DEV) $(BIN)/viva serve

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/slots.py
	$(BIN)/python bench/booking.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
