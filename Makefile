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

# Opens the app: the bundled sample system, paper and dry-run. Without a display it renders
# offscreen for a few seconds and saves a screenshot instead of failing.
run: $(VENV)/.installed-run
	bash scripts/install-system-deps.sh --gui
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ -n "$$QT_QPA_PLATFORM" ]; then \
	    $(VENV)/bin/griddesk gui; \
	else \
	    echo "no display: running the app offscreen for 10 s, screenshot in build/griddesk.png"; \
	    mkdir -p build; \
	    QT_QPA_PLATFORM=offscreen $(VENV)/bin/griddesk gui --quit-after 10 --screenshot build/griddesk.png; \
	fi

sysdeps:
	bash scripts/install-system-deps.sh

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

# The kernels compile once (griddesk warmup), then the tests run in TEST_WORKERS processes, each
# loading them from the cache. On 2 cores: 328 s with three (the third fills the cores while
# tests wait on their subprocesses and fake exchanges), 510 s with two, 422 s with four (measured
# before the live tests stopped waiting on the wall clock; a clean clone's CI now takes 7.4 min:
# warm-up 86 s, tests 314 s).
TEST_WORKERS ?= 3
test: sysdeps $(VENV)/.installed-test lint
	QT_QPA_PLATFORM=offscreen $(PY) -m app.cli warmup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n $(TEST_WORKERS)

bench: $(VENV)/.installed-test
	$(PY) bench/bench_spot_grid.py

sample: $(VENV)/.installed-run
	$(PY) -m engine.sample

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
