# The two commands of the README: `make demo` runs the job, `make test` runs every test.
# Both create or reuse .venv and install from nothing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch==2.13.0 comes from the CPU wheel on this machine's disk when it is there.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test lint bench bench-gpu install chromium clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(FIND_LINKS) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fraudseq demo

lint: $(STAMP)
	$(VENV)/bin/ruff check features pipeline dags tests bench
	$(VENV)/bin/ruff format --check features pipeline dags tests bench
	$(VENV)/bin/mypy features pipeline

# The report and UI tests render pages in Debian's headless Chromium: installed when missing
# (as root, or through sudo). Where that fails the page tests skip, except under CI=true,
# where a missing browser is a failure.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing chromium (apt-get) for the page tests"; \
	  { $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } \
	  || { echo "could not install chromium: the page tests will skip" >&2; [ "$$CI" != true ]; }; \
	fi

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: $(STAMP) chromium lint
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

bench: $(STAMP)
	$(PY) -m bench

# the rows a CUDA GPU changes, on that GPU (bench/gpu.py); raw figures in docs/benchmarks/gpu.json
bench-gpu: $(STAMP)
	$(PY) -m bench.gpu --out docs/benchmarks/gpu.json

clean:
	rm -rf .fraudseq .pytest_cache .mypy_cache .ruff_cache
