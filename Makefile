# The two quick-start commands: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
BIN := $(VENV)/bin
# The venv's tools (rewardops, rewardops-trainer, rclone) for every command and test below.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup demo test lint typecheck unit crd

setup:
	@bash scripts/setup.sh $(VENV)

demo: setup
	$(BIN)/rewardops demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -q tests/unit

test: lint typecheck
	$(BIN)/python -m pytest -q -ra

# Regenerate the CRD from the API models, and the chart's copy of it.
crd: setup
	$(BIN)/rewardops crd -o crds/rewardops.dev_rewardmodelupdates.yaml
	cp crds/rewardops.dev_rewardmodelupdates.yaml charts/rewardops/files/crds/
