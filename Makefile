# gridrun — the two commands: `make up` (a local grid) and `make test` (every test).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint fmt proto bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## up: a local grid in the foreground (master on :9092/:50051 + 2 workers); Ctrl-C stops it
up: $(STAMP)
	$(BIN)/gridrun up --workers 2

## test: every test (unit, integration, system, browser)
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_slurm.sh
	$(BIN)/python -m pytest

## lint: what CI enforces besides the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## proto: regenerate src/gridrun/_proto from proto/
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

## bench: figures for this machine (see bench/README.md); PG=postgresql://... adds PostgreSQL
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/throughput.py $(if $(PG),--db $(PG))
	$(BIN)/python bench/cost.py --peers
	$(BIN)/python bench/ingest.py $(if $(PG),--db $(PG))
	$(BIN)/python bench/depth.py $(if $(PG),--db $(PG))
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/grpc_floor.py
	$(BIN)/python bench/failover.py

clean:
	rm -rf $(VENV) gridrun-data .pytest_cache .mypy_cache .ruff_cache
