# rowgen: every target creates .venv from pyproject.toml when it is missing or stale.
#   make train export     train the stream LSTM (mean head + latent head for samples), bundle it
#   make classifier eval  the CNN that judges sampled completions, then every measure
#   make test             fast tests (make test-all: slow ones too)
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
HOST ?= 127.0.0.1
PORT ?= 7860
DEVICE ?= auto
PYTEST_ARGS ?=

TRAIN_FLAGS = --cell $(CELLS) --mode $(MODE) --head $(HEAD) --dataset $(DATASET) --seed $(SEED) --artifacts $(ARTIFACTS) \
	$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(EPOCHS),--epochs $(EPOCHS))
DATA_FLAG = $(if $(DATA_DIR),--data-dir $(DATA_DIR))

.PHONY: venv train export serve test test-all bench eval load lint format clean classifier

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV) && $(BIN)/pip install -q -e '.[dev]' && touch $@

train: $(STAMP)
	$(BIN)/python -m training.train $(TRAIN_FLAGS)

export: $(STAMP)
	$(BIN)/python -m export --artifacts $(ARTIFACTS) $(NAMES)

serve: $(STAMP)
	$(BIN)/python -m serve --host $(HOST) --port $(PORT) --device $(DEVICE) --artifacts $(ARTIFACTS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.speed

classifier: $(STAMP)
	$(BIN)/python -m bench.classifier $(DATA_FLAG)

eval: $(STAMP)
	$(BIN)/python -m bench.evaluate --artifacts $(ARTIFACTS) $(DATA_FLAG)

load: $(STAMP)
	$(BIN)/python -m bench.load

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf runs .pytest_cache .ruff_cache
