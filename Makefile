# Two commands on a fresh machine: `make demo` and `make test`. Each creates or reuses .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The example automations that share batch-service; `make demo PARAMS=parameters/` runs all.
PARAMS ?= parameters/example.yaml parameters/kr-prices.yaml

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The example automations as a fleet on one service: all five step notebooks (papermill) against
## localcloud, in a workspace copy of the project's service folders (runs/workspace), so the
## repository stays clean; ends with the verify table and one row per automation.
demo: $(STAMP)
	$(BIN)/opslib run $(PARAMS) --workspace runs/workspace

## Lint, then every test.
test: $(STAMP) lint
	$(BIN)/python -m pytest

## The project's code. Not the jobs steps 1-2 write into service/ (scripts/batch/<job>.py and
## tests/test_<job>.py): once written they are the user's code, and tests/test_scaffold.py checks
## that what step 1 generates is ruff-clean. (The notebooks' code cells are linted; their
## outputs are not code, and tests/test_notebooks.py checks that none is committed.)
LINT_PATHS   := opslib service tests benchmarks notebooks
LINT_EXCLUDE := --extend-exclude service/scripts/batch --extend-exclude service/tests

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_EXCLUDE) $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_EXCLUDE) $(LINT_PATHS)

bench: $(STAMP)
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/localcloud_proxy.py
	$(BIN)/python benchmarks/logs_to_dataframe.py
	$(BIN)/python benchmarks/end_to_end.py
	$(BIN)/python benchmarks/fleet_status.py
	$(BIN)/python benchmarks/alerts_delivery.py
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
