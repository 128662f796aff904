# rowgen: every target creates .venv from pyproject.toml when it is missing or stale.
#   make train export     train the stream LSTM (mean head + latent head for samples), bundle it
#   make classifier eval  the CNN that judges sampled completions, then every measure
#   make test             fast tests (make test-all: slow ones too)
#   make triton           Triton model repositories of the bundles: artifacts/triton/ (onnxruntime) and artifacts/triton-python/
#   make triton-serve     Triton on artifacts/triton-python/, HTTP :8000, gRPC :8001, metrics :8002 (make triton-env: its Python)
#   make web              the in-browser page on http://127.0.0.1:8000 (onnxruntime-web)
#   make course STATE_DICT=net.pth   a bundle from the course notebook's saved state_dict
#   make api              the v2 (KServe) API, REST :8080 and gRPC :8081 (make api-ray: REST on Ray Serve, deploy/ray/serve.yaml)
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rowgen-installed

CELLS ?= lstm
MODE ?= stream
HEAD ?= cvae
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

TRAIN_FLAGS = --cell $(CELLS) --mode $(MODE) --dataset $(DATASET) --head $(HEAD) --seed $(SEED) --runs $(RUNS) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(EPOCHS),--epochs $(EPOCHS))
DATA_FLAG = $(if $(DATA_DIR),--data-dir $(DATA_DIR))

WEB_NPM := web/node_modules/.package-lock.json

.PHONY: venv train export serve test test-all fuzz bench eval load lint format clean triton triton-env triton-serve soak web course api api-ray classifier

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV) && $(BIN)/pip install -q -e '.[dev]' && touch $@

train: $(STAMP)
	$(BIN)/python -m training.train $(TRAIN_FLAGS)

export: $(STAMP)
	$(BIN)/python -m export --runs $(RUNS) --artifacts $(ARTIFACTS) $(NAMES)

triton: $(STAMP)
	$(BIN)/python -m export.triton --artifacts $(ARTIFACTS) --out $(TRITON_OUT) --python-out $(TRITON_PYTHON_OUT) $(NAMES)

triton-env: $(STAMP)
	bash .ci/get-tritonserver && $(BIN)/python -m export.triton.env --out $(TRITON_ENV)

triton-serve: triton triton-env
	$(BIN)/python -m export.triton.server --repository $(TRITON_PYTHON_OUT) --env $(TRITON_ENV) --host $(HOST) \
		--http-port $(TRITON_HTTP_PORT) --grpc-port $(TRITON_GRPC_PORT) --metrics-port $(TRITON_METRICS_PORT)

serve: $(STAMP)
	$(BIN)/python -m serve --host $(HOST) --port $(PORT) --device $(DEVICE) --artifacts $(ARTIFACTS)

api api-ray: PORT = 8080
api: $(STAMP)
	$(BIN)/python -m serve.api --host $(HOST) --port $(PORT) --grpc-port $(GRPC_PORT) --device $(DEVICE) --artifacts $(ARTIFACTS)

api-ray: $(STAMP)
	$(BIN)/python -m serve.ray_app --config $(RAY_CONFIG) --host $(HOST) --port $(PORT) --device $(DEVICE) --artifacts $(ARTIFACTS) $(if $(ADDRESS),--address $(ADDRESS))

web: $(STAMP) $(WEB_NPM)
	$(BIN)/python -m serve.web --host $(HOST) --port $(WEB_PORT) --artifacts $(ARTIFACTS)
$(WEB_NPM): web/package-lock.json
	cd web && npm ci --no-audit --no-fund

course: $(STAMP)
	$(BIN)/python -m export --from-state-dict $(STATE_DICT) --name $(COURSE_NAME) --artifacts $(ARTIFACTS) $(DATA_FLAG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

fuzz: $(STAMP)
	ROWGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -m fuzz --hypothesis-profile fuzz $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.speed

classifier: $(STAMP)
	$(BIN)/python -m evaluation.classifier $(DATA_FLAG)

eval: $(STAMP)
	$(BIN)/python -m evaluation.evaluate --artifacts $(ARTIFACTS) $(DATA_FLAG)

load: $(STAMP)
	$(BIN)/python -m bench.load --artifacts $(ARTIFACTS)

soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(MINUTES) --clients $(CLIENTS) --artifacts $(ARTIFACTS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:  # caches only: runs/ holds trained weights that may not be exported yet
	rm -rf .pytest_cache .ruff_cache
