# Set-up and the two jobs. `make run` measures this machine; `make test` runs the test suite.
# A local virtual environment (.venv) holds everything. If the Python that creates it already has
# torch (a GPU node's CUDA build), the venv reuses it through --system-site-packages and nothing
# replaces it; otherwise a CPU build of torch is installed first (TORCH_VERSION, PIP_TORCH_ARGS).

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Triton matching the GPU image this project is checked on; only used where torch is installed here.
TRITON_VERSION ?= 3.6.0
PIP_TORCH_ARGS ?=
BIN := $(VENV)/bin

.PHONY: run test test-gpu gpu-check clean

$(VENV)/.ready: pyproject.toml Makefile
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	  echo "using the torch that $(PYTHON) already has: $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)" $(PIP_TORCH_ARGS) && \
	  if [ "$$(uname -s)" = Linux ]; then $(BIN)/python -m pip install -q "triton==$(TRITON_VERSION)"; fi; \
	fi
	$(BIN)/python -m pip install -q -e ".[test,report,gpu]"
	@touch $@

run: $(VENV)/.ready
	$(BIN)/tokenbench run

test: $(VENV)/.ready
	$(BIN)/python -m pytest -q

test-gpu: $(VENV)/.ready
	$(BIN)/python -m pytest -q -m gpu

# The one-call GPU check (bench/gpu_check.py): steps by value, each fitted to what is left of one 565 s
# deadline (docs/gpu-check.md), from the source tree with the node's own python3, nothing installed; OUT
# packed after every step. GPU_CHECK_ARGS passes flags: --dry-run [--device h100-sxm|h200], --cpu-rehearsal.
GPU_CHECK_OUT ?= results/tmp/gpu-check
GPU_CHECK_ARGS ?=
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu_check.sh $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV)
