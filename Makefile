# GridDesk: `make run` launches on the bundled sample (dry-run); `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench sysdeps sample clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# Until the desktop app lands, `run` backtests a trailing geometric grid on the bundled sample.
run: $(VENV)/.installed-run
	$(VENV)/bin/griddesk backtest --data sample --strategy spot-grid --mode range \
	    --spacing geometric --levels 40 --capital 10000 --fee 0.001 --trailing both

sysdeps:
	bash scripts/install-system-deps.sh

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

test: sysdeps $(VENV)/.installed-test lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: $(VENV)/.installed-test
	$(PY) bench/bench_spot_grid.py

sample: $(VENV)/.installed-run
	$(PY) -m engine.sample

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
