# `make test` works on a fresh clone with nothing installed but Python: it creates .venv,
# installs the pinned requirements and the package (editable), then runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup train train-shapes test test-fast clean

setup: $(STAMP)

$(STAMP): requirements/dev.txt setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: make needs Python 3.11 or newer (the pinned numpy, scikit-learn and matplotlib do); found " + sys.version.split()[0] + ": run make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)
	@echo "Installed into $(VENV). For the README's python and torchrun commands, activate it in each new shell:"
	@echo "    source $(VENV)/bin/activate"

# The default job: ResNet-18 on the embedded digits (a minute or two on 2 CPU cores, about 98% val accuracy).
train: $(STAMP)
	$(PY) tools/train_net.py --cfg cfgs/digits/resnet18_sgd_step.yaml
	@echo "Next, in this shell: source $(VENV)/bin/activate, then python tools/... and torchrun as the README shows"

# Detection: FCOS (ResNet-18 FPN) on the generated shapes set, written to datasets/ on first use (a few minutes).
train-shapes: $(STAMP)
	$(PY) tools/train_net.py --cfg cfgs/shapes/fcos_resnet18_sgd_cosine.yaml

test: $(STAMP)
	$(PY) -m pytest -q tests

# The edit loop: everything but the end-to-end tests that start real processes (marked `slow`).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache output datasets
