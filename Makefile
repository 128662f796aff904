# rowgen: every target creates .venv from pyproject.toml when it is missing or stale: serve, api,
# web and load install the serving set only (no torch), the others the development set.
# `make help` lists the targets; the `## ` comment after each target is its line there.
# No telemetry from anything a target runs: onnxruntime's, gradio's, Hugging Face's.
export ORT_DISABLE_TELEMETRY ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False
export HF_HUB_DISABLE_TELEMETRY ?= 1

PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rowgen-installed
SERVE_STAMP := $(VENV)/.rowgen-serving
# pip compiles no bytecode (it was a third of the serving set's install time, 79 s against 50 s):
# a server compiles what it imports as it starts. The development set is then compiled on every
# core, serving packages included: its tests start dozens of Python processes, and where
# PYTHONDONTWRITEBYTECODE is set (CI machines) each would compile every module it imports, every
# time (the fast suite took 240 s so, 173 s compiled). compileall's status is not kept: torch
# ships a test file in Python 3.12 syntax that it reports.
PIP_INSTALL = $(BIN)/pip install -q --no-compile
COMPILE = $(BIN)/python -m compileall -qq -j 0 $(VENV)/lib >/dev/null || true
comma := ,
# The serving set: `serve`, `api` and `load` (make load's charts), plus onnxruntime's CUDA
# runtime wheels where an NVIDIA driver is loaded. The development set (`dev`) holds it and adds
# torch, onnx and the tools.
SERVE_EXTRAS ?= serve,api,load$(if $(wildcard /proc/driver/nvidia/version),$(comma)cuda)

CELLS ?= lstm
MODE ?= stream
HEAD ?= flow
DATASET ?= fashion-mnist
DATA_DIR ?= $(ROWGEN_DATA_DIR)
EPOCHS ?=
SEED ?= 0
NAMES ?=
ARTIFACTS ?= artifacts
RUNS ?= runs
HOST ?= 127.0.0.1
PORT ?= 7860
DEVICE ?= auto
WEB_PORT ?= 8000
STATE_DICT ?= net.pth
COURSE_NAME ?= course
PYTEST_ARGS ?=
# Tests run in parallel (pytest-xdist), one worker a core (a third worker on 2 cores was slower:
# each worker collects, so imports, every test module first). tests/scheduling.py decides which
# tests go to one worker together. TEST_WORKERS=0 runs them in one process, one at a time.
TEST_WORKERS ?= $(shell nproc)
PARALLEL ?= -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder
TRITON_OUT ?= $(ARTIFACTS)/triton
TRITON_PYTHON_OUT ?= $(TRITON_OUT)-python
TRITON_ENV ?= build/triton-env
TRITON_HTTP_PORT ?= 8000
TRITON_GRPC_PORT ?= 8001
TRITON_METRICS_PORT ?= 8002
FUZZ_EXAMPLES ?= 5000
MINUTES ?= 10
CLIENTS ?= 8
GRPC_PORT ?= 8081
ADDRESS ?=
RAY_CONFIG ?= deploy/ray/serve.yaml
IMAGE ?= rowgen:latest
IMAGE_DEVICE ?= cpu
BASE ?=

TRAIN_FLAGS = --cell $(CELLS) --mode $(MODE) --dataset $(DATASET) --head $(HEAD) --seed $(SEED) --runs $(RUNS) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(EPOCHS),--epochs $(EPOCHS))
DATA_FLAG = $(if $(DATA_DIR),--data-dir $(DATA_DIR))

WEB_NPM := web/node_modules/.package-lock.json
NODE_NPM := examples/node/node_modules/.package-lock.json
TRITONSERVER := build/pytriton/pytriton/tritonserver/bin/tritonserver
TRITON_ENV_STAMP := $(TRITON_ENV)/rowgen-triton-env.json
# What the tests use beyond .venv: the pinned npm packages where Node.js is here, Triton's server
# and the python backend's environment.
TEST_DEPS := $(if $(shell command -v npm),$(WEB_NPM) $(NODE_NPM)) $(TRITONSERVER) $(TRITON_ENV_STAMP)

.PHONY: help venv train export serve test test-all fuzz bench eval class-drift load lint format clean triton triton-env triton-serve soak web course api api-ray classifier screenshots attack image image-test install-times

help:  ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 20

venv: $(STAMP)  ## create or update .venv from pyproject.toml (every target does this first)
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV) && $(PIP_INSTALL) -e '.[dev]' && { $(COMPILE); } && touch $@
# A current development set already holds the serving set.
$(SERVE_STAMP): pyproject.toml
	if [ $(STAMP) -nt pyproject.toml ]; then touch $@; else \
	$(PY) -m venv $(VENV) && $(PIP_INSTALL) -e '.[$(SERVE_EXTRAS)]' && touch $@; fi

train: $(STAMP)  ## train the stream LSTM and its flow sampler into runs/<name>/ (CELLS=, HEAD=, EPOCHS=)
	$(BIN)/python -m training.train $(TRAIN_FLAGS)

export: $(STAMP)  ## validate and publish runs/<name>/ as a bundle in artifacts/<name>/
	$(BIN)/python -m export --runs $(RUNS) --artifacts $(ARTIFACTS) $(NAMES)

triton: $(STAMP)  ## Triton model repositories: artifacts/triton/ (onnxruntime), artifacts/triton-python/
	$(BIN)/python -m export.triton --artifacts $(ARTIFACTS) --out $(TRITON_OUT) --python-out $(TRITON_PYTHON_OUT) $(NAMES)

triton-env: $(TRITON_ENV_STAMP)  ## the python backend's Python: numpy 1.26, onnxruntime, rowgen/
$(TRITON_ENV_STAMP): $(TRITONSERVER) $(wildcard rowgen/*.py)
	$(BIN)/python -m export.triton.env --out $(TRITON_ENV)

triton-serve: triton triton-env  ## Triton on artifacts/triton-python/: HTTP :8000, gRPC :8001, metrics :8002
	$(BIN)/python -m export.triton.server --repository $(TRITON_PYTHON_OUT) --env $(TRITON_ENV) --host $(HOST) \
		--http-port $(TRITON_HTTP_PORT) --grpc-port $(TRITON_GRPC_PORT) --metrics-port $(TRITON_METRICS_PORT)

serve: $(SERVE_STAMP)  ## the Gradio app on http://127.0.0.1:7860 (HOST=, PORT=, DEVICE=)
	$(BIN)/python -m serve --host $(HOST) --port $(PORT) --device $(DEVICE) --artifacts $(ARTIFACTS)

api api-ray: PORT = 8080
api: $(SERVE_STAMP)  ## the v2 (KServe) API: REST :8080, gRPC :8081
	$(BIN)/python -m serve.api --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT) --device $(DEVICE) --artifacts $(ARTIFACTS)

api-ray: $(STAMP)  ## the v2 API's REST on Ray Serve: serve run deploy/ray/serve.yaml (ADDRESS=)
	$(BIN)/python -m serve.ray_app --config $(RAY_CONFIG) --host $(HOST) --port $(PORT) --device $(DEVICE) --artifacts $(ARTIFACTS) $(if $(ADDRESS),--address $(ADDRESS))

web: $(SERVE_STAMP) $(WEB_NPM)  ## the in-browser page on http://127.0.0.1:8000 (onnxruntime-web)
	$(BIN)/python -m serve.web --host $(HOST) --port $(WEB_PORT) --artifacts $(ARTIFACTS)
$(WEB_NPM): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
$(NODE_NPM): examples/node/package-lock.json
	cd examples/node && npm ci --no-audit --no-fund
$(TRITONSERVER): | $(STAMP)
	bash .ci/get-tritonserver

screenshots: $(STAMP) $(WEB_NPM)  ## docs/screenshot.png and docs/web.png, shot from the running servers
	$(BIN)/python -m docs.screenshots --artifacts $(ARTIFACTS)

course: $(STAMP)  ## a bundle from the course notebook's saved state_dict (STATE_DICT=net.pth)
	$(BIN)/python -m export --from-state-dict $(STATE_DICT) --name $(COURSE_NAME) --artifacts $(ARTIFACTS) $(DATA_FLAG)

test: $(STAMP) $(TEST_DEPS)  ## the fast tests (installs the web/Node.js packages and Triton's server core first)
	$(BIN)/python -m pytest $(PARALLEL) $(PYTEST_ARGS)

test-all: $(STAMP) $(TEST_DEPS)  ## every test, the slow ones too
	$(BIN)/python -m pytest -m "" $(PARALLEL) $(PYTEST_ARGS)

fuzz: $(STAMP)  ## only the property-based tests, with many more examples (FUZZ_EXAMPLES=)
	ROWGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -m fuzz --hypothesis-profile fuzz $(PYTEST_ARGS)

bench: $(STAMP)  ## speed of every way to complete an image, side by side (artifacts/bench/)
	$(BIN)/python -m bench.speed

classifier: $(STAMP)  ## the CNN whose features judge sampled completions
	$(BIN)/python -m evaluation.classifier $(DATA_FLAG)

eval: $(STAMP)  ## test-split quality of every bundle beside the baselines (artifacts/eval/)
	$(BIN)/python -m evaluation.evaluate --artifacts $(ARTIFACTS) $(DATA_FLAG)

class-drift: $(STAMP)  ## how far sampled completions wander from the prompt's class, row by row
	$(BIN)/python -m evaluation.class_drift --bundle $(ARTIFACTS)/lstm $(DATA_FLAG)

load: $(SERVE_STAMP)  ## the servers side by side under load (artifacts/bench/load.md)
	$(BIN)/python -m bench.load --artifacts $(ARTIFACTS)

install-times: $(STAMP)  ## fresh clone to a serving API, then the development set: pip's times and sizes
	$(BIN)/python -m bench.install

attack: $(STAMP)  ## hostile requests against the v2 API on loopback, and what came back
	$(BIN)/python -m bench.attack --artifacts $(ARTIFACTS)

soak: $(STAMP)  ## the servers under steady load for MINUTES= minutes
	$(BIN)/python -m bench.soak --minutes $(MINUTES) --clients $(CLIENTS) --artifacts $(ARTIFACTS)

lint: $(STAMP)  ## ruff and the import-linter layer contracts
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: $(STAMP)  ## ruff's fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

image:  ## the serving container image, with podman (IMAGE=, IMAGE_DEVICE=cpu|cuda, BASE=)
	deploy/image/build.sh --tag $(IMAGE) --device $(IMAGE_DEVICE) $(if $(BASE),--base $(BASE))

image-test: $(STAMP)  ## build the image, run it, and check its answers (slow)
	$(BIN)/python -m pytest -m slow tests/deploy/test_image.py $(PYTEST_ARGS)

clean:  ## caches only: runs/ holds trained weights that may not be exported yet
	rm -rf .pytest_cache .ruff_cache
