# Quick start: `make demo` (creates .venv, installs, runs the whole pipeline), then `make test`.
PYTHON ?= python3
VENV ?= .venv
# The torch build to install; override for another platform, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python

.PHONY: demo test test-quick install bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,plot]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/unlearn demo

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider

# the suite without the tests marked slow (recipe smoke runs, the README's blocks, multi-process runs)
test-quick: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

bench: $(VENV)/.installed
	for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf demo-run .pytest_cache
