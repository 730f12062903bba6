# Two commands do all set-up: `make demo` trains the default MNIST recipe, `make test` runs
# the checks. Both create .venv and install cnnlab from this folder the first time.
VENV ?= .venv
PYTHON ?= python3
RECIPE ?= mnist-s5-10ep
ARGS ?=  # e.g. make demo ARGS="--set train.epochs=2 --html"
# the test files run in one worker per core, a file (and its module fixtures) to each
PARALLEL = -n logical --dist loadfile

.PHONY: demo test test-fast docs wheel

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/cnnlab train $(RECIPE) $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache  # the layers of DESIGN.md (pyproject.toml)
	$(VENV)/bin/pytest $(PARALLEL)
	$(VENV)/bin/pytest benchmarks/faults -m adversarial  # hostile run folders, every verb

test-fast: $(VENV)/.installed  # the same minus every test that trains or starts a process
	$(VENV)/bin/pytest $(PARALLEL) -m "not slow"

docs: $(VENV)/.installed  # the documentation site, into site/ (mkdocs.yml)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

wheel: $(VENV)/.installed  # dist/cnnlab-<version>-py3-none-any.whl
	$(VENV)/bin/python -m build --wheel --no-isolation --outdir dist .
