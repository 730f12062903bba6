# Two commands do all set-up: `make demo` trains the default MNIST recipe, `make test` runs
# the checks. Both create .venv and install cnnlab from this folder the first time.
VENV ?= .venv
PYTHON ?= python3
RECIPE ?= mnist-s5-10ep
ARGS ?=  # e.g. make demo ARGS="--set train.epochs=2 --html"

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
	$(VENV)/bin/pytest -n logical --dist loadfile  # one worker per core, a test file to each
	$(VENV)/bin/pytest benchmarks/faults -m adversarial  # hostile run folders, every verb

test-fast: $(VENV)/.installed  # the same minus every test that trains or starts a process
	$(VENV)/bin/pytest -n logical --dist loadfile -m "not slow"

docs: $(VENV)/.installed  # the documentation site, into site/ (mkdocs.yml)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

wheel: $(VENV)/.installed  # dist/cnnlab-<version>-py3-none-any.whl
	$(VENV)/bin/python -m build --wheel --no-isolation --outdir dist .
