# Two commands do all the set-up on a fresh machine:
#   make demo   - LightCNN trained under Soft Filter Pruning on Fashion-MNIST
#                 (offline), compacted, before/after table
#   make test   - the whole test suite
#   make test-fast - the suite without the end-to-end example, training
#                 and tuning runs (marked `slow`)
PYTHON ?= python3
VENV := .venv
VENV_JAX := .venv-jax
VENV_TORCH := .venv-torch
PIP_FLAGS := -q --disable-pip-version-check -c .ci/constraints.txt
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv venv-jax venv-torch venv-sidebyside sidebyside data demo demo-jax test test-fast test-jax test-torch lint docs clean

venv: $(VENV)/.installed
venv-jax: $(VENV_JAX)/.installed
venv-torch: $(VENV_TORCH)/.installed

# tensorflow-model-optimization pins numpy~=1.23 and tf_keras would pull a
# second TensorFlow: both go in without dependencies (theirs that matter are
# already there) so that the tfmot interop test runs.
$(VENV)/.installed: pyproject.toml .ci/requirements.py .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PYTHON) .ci/requirements.py tensorflow-cpu all dev docs > $(VENV)/requirements.txt
	$(VENV)/bin/pip install $(PIP_FLAGS) -r $(VENV)/requirements.txt
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps \
		tensorflow-model-optimization tf_keras dm-tree
	$(VENV)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# Keras on JAX with no TensorFlow installed: proves the layers never import it.
$(VENV_JAX)/.installed: pyproject.toml .ci/requirements.py .ci/constraints.txt
	$(PYTHON) -m venv $(VENV_JAX)
	$(PYTHON) .ci/requirements.py jax tuner sklearn plot dev > $(VENV_JAX)/requirements.txt
	$(VENV_JAX)/bin/pip install $(PIP_FLAGS) -r $(VENV_JAX)/requirements.txt
	$(VENV_JAX)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# Keras on PyTorch (the CPU build of torch 2.13.0 that lies on these
# machines; a bare `torch` would fetch a CUDA build of several GB).
$(VENV_TORCH)/.installed: pyproject.toml .ci/requirements.py .ci/constraints.txt
	$(PYTHON) -m venv $(VENV_TORCH)
	$(PYTHON) .ci/requirements.py sklearn dev > $(VENV_TORCH)/requirements.txt
	$(VENV_TORCH)/bin/pip install $(PIP_FLAGS) -r $(VENV_TORCH)/requirements.txt torch==2.13.0 h5py
	$(VENV_TORCH)/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

# benchmarks/torch_side_by_side.py (not part of `make test` or CI):
# Torch-Pruning and ONNX Runtime beside the CPU torch of .venv-torch, and
# the Keras side's ONNX exporter (tf2onnx) and runtime in .venv.
SIDE_BY_SIDE_PINS := torch-pruning==1.6.1 onnx==1.23.2 onnxruntime==1.32.0
venv-sidebyside: venv venv-torch
	$(VENV_TORCH)/bin/pip install $(PIP_FLAGS) $(SIDE_BY_SIDE_PINS)
	$(VENV)/bin/pip install $(PIP_FLAGS) tf2onnx==1.17.0 onnx==1.23.2 \
		onnxruntime==1.32.0

# The whole side-by-side run (hours on one core per library).
sidebyside: venv-sidebyside data
	$(VENV)/bin/python benchmarks/torch_side_by_side.py --stage all

# Real Fashion-MNIST IDX files from Debian; the demo falls back to
# scikit-learn's digits when the package cannot be installed.
data:
	@if [ ! -d $(FASHION_MNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "dataset-fashion-mnist not installed; the demo will use scikit-learn's digits"; \
	fi

demo: venv data
	$(VENV)/bin/python examples/demo/prune_lightcnn.py --output-dir runs/demo

# The same demo on Keras's JAX backend, in the environment without TensorFlow.
demo-jax: venv-jax data
	KERAS_BACKEND=jax $(VENV_JAX)/bin/python examples/demo/prune_lightcnn.py \
		--output-dir runs/demo-jax

# Two pytest-xdist workers (one per core); a test file stays on one worker so
# that its module-scoped models are built once.
PYTEST_FLAGS ?= -n 2 --dist loadfile --durations=15

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_FLAGS)

# The edit-test loop: everything but the tests marked `slow` (end-to-end
# example, training and tuning runs). `make test` and CI run them all.
test-fast: venv
	$(VENV)/bin/python -m pytest $(PYTEST_FLAGS) -m "not slow"

test-jax: venv-jax
	KERAS_BACKEND=jax $(VENV_JAX)/bin/python -m pytest $(PYTEST_FLAGS)

# Layers, engine and callback on Keras's PyTorch backend, run eagerly:
# torch.compile (inductor) would compile C++ for every graph.
test-torch: venv-torch
	KERAS_BACKEND=torch TORCHDYNAMO_DISABLE=1 $(VENV_TORCH)/bin/python -m pytest \
		$(PYTEST_FLAGS) tests/layers tests/pruning tests/callbacks

lint: venv
	$(VENV)/bin/ruff check .

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV_JAX) $(VENV_TORCH) site runs
