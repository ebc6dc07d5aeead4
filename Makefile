# The two commands of the README's quick start. Both work on a fresh machine with
# Python 3.11+ and a C compiler: they make a virtualenv in .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# reinstall (and recompile the Cython modules) only when what the build reads changed
BUILD_INPUTS := setup.py pyproject.toml $(wildcard core_ext/*.pyx core_ext/*.pxd)

.PHONY: serve test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python $(BUILD_INPUTS)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## make serve: install edgeim and run one node on embedded defaults (data under ./data)
serve: install
	$(BIN)/im serve

## make test: install what the tests need and run them all
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info core_ext/*.c core_ext/*.so
