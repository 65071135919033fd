# One-command set-up for a fresh clone: each target creates .venv and installs mtkd into it first.
#   make demo   install, then run the main job on the embedded synthetic data (CPU is fine)
#   make test   install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/synthetic

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,plot,onnx]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python tools/run_demo.py --data $(DATA)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) work_dirs *.egg-info
