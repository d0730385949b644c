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

lint: $(STAMP)
	$(BIN)/ruff check opslib service tests benchmarks notebooks
	$(BIN)/ruff format --check opslib service tests benchmarks notebooks

bench: $(STAMP)
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/localcloud_proxy.py
	$(BIN)/python benchmarks/logs_to_dataframe.py
	$(BIN)/python benchmarks/end_to_end.py
	$(BIN)/python benchmarks/fleet_status.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
