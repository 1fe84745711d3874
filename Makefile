# Set-up is part of every target: a fresh machine needs only python3 and make.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A CPU build of torch lies on this project's machines; elsewhere pip takes PyPI's build.
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: test run lint typecheck unit bench bench-quick bench-deps clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[dev]"
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

test: lint typecheck unit

run: $(STAMP)
	$(VENV)/bin/torchnode train

bench-deps: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	# torchdyn's metadata pulls torchvision and a notebook stack it does not import;
	# install it without them, plus what its imports need.
	$(PIP) install -q --no-deps torchdyn==1.0.6 torchcde==0.2.5 torchsde==0.2.6
	$(PIP) install -q attrs trampoline pytorch-lightning

bench: bench-deps
	$(PY) -m benchmarks

bench-quick: bench-deps
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
