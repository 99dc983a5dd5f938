# The two commands of the README. Each creates .venv when missing and installs the package with its dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV): hwnas_pl and every dependency (torch, Lightning, aihwkit, ...)."
	@echo "The first install takes about 3 minutes here; later runs skip it."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hwnas search --config configs/search/nb201_nsga2_lut.yaml --overwrite true

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check hwnas_pl tests benchmarks
	$(BIN)/ruff format --check hwnas_pl tests benchmarks

clean:
	rm -rf logs .pytest_cache
