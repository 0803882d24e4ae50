# GridDesk: `make run` launches on the bundled sample (dry-run); `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench sysdeps sample clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/griddesk backtest --data sample --strategy spot-grid --mode range \
	    --spacing geometric --levels 40 --capital 10000 --fee 0.001 --trailing both

sysdeps:
	bash scripts/install-system-deps.sh

lint: $(STAMP)
	$(PY) -m ruff check .

test: sysdeps $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/bench_spot_grid.py

sample: $(STAMP)
	$(PY) -m engine.sample --out resources/sample/SAMPLE-15m.csv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
