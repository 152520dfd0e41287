# Set-up and main entry points. `make demo` and `make test` each install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Benchmark data: $WARDROBE_DATA_DIR when set; in a checkout beside ../shared/data, that folder.
WARDROBE_DATA_DIR ?= $(if $(wildcard ../shared/data/clothing-dataset),$(abspath ../shared/data),)
export WARDROBE_DATA_DIR
RUN ?= runs/top10-probe

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: install
	$(BIN)/wardrobe datasets download --if-missing
	$(BIN)/wardrobe train clothing-top10 --out $(RUN) --overwrite
	$(BIN)/wardrobe evaluate $(RUN) clothing-top10 --out $(RUN)/eval
	$(BIN)/wardrobe predict $(RUN) $$($(BIN)/python -c "from wardrobe.data import demo_photos; print(' '.join(map(str, demo_photos('clothing-top10'))))")

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not slow"

bench: install
	bash bench/core.sh

clean:
	rm -rf runs .pytest_cache
