# Two commands for a fresh machine: `make demo` and `make test`. Both create (or reuse) the virtual env in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.sv4d-kit-ready

.PHONY: demo test notebooks lint format golden bench tiny-model tiny-model-gpu tiny-model-projected tiny-model-simple tiny-model-sigma-data clean

$(READY): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: on this kind of machine 2.13.0 is a local CPU wheel (a bare `torch` would pull CUDA).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(READY)
	$(BIN)/sv4d-kit demo --output outputs/demo --overwrite

test: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf notebooks/_executed
	$(BIN)/python -m pytest
	# the notebooks' second pass: nbval re-runs the copies papermill executed and compares the checked cells, with
	# the one torch thread the first pass had (tests/conftest.py): CPU results differ in their last bits by threads
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider \
		notebooks/_executed

# After editing a notebook source (notebooks/NN_name.py): write its .ipynb pair (no outputs).
notebooks: $(READY)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

golden: $(READY)
	$(BIN)/python -m sv4d_kit.golden ../shared/reference

bench: $(READY)
	$(BIN)/python benchmarks/bench_render.py

# Retrain the bundled tiny SV4D: both stages of its recipe, recipes/tiny_base.json then recipes/tiny_finetune.json
# (hours on a 2-core CPU; the measured times are in BENCHMARKS.md).
tiny-model: $(READY)
	$(BIN)/sv4d-kit train --output runs/tiny-base --config recipes/tiny_base.json --resume --no-progress
	$(BIN)/sv4d-kit train --output runs/tiny-finetune --config recipes/tiny_finetune.json --resume --no-progress \
		--export sv4d_kit/assets/tiny_sv4d

# Optional stage 3 on a CUDA GPU (run 11 of BENCHMARKS.md, not bundled): the bundled model (stage 2) fine-tuned 1750
# steps of 32 scenes with 12 rendering processes (timed in BENCHMARKS.md). Needs a CUDA build of torch in $(VENV).
tiny-model-gpu: $(READY)
	$(BIN)/sv4d-kit train --output runs/tiny-gpu --config recipes/tiny_gpu_finetune.json --device cuda --workers 12 \
		--resume --no-progress

# Experiment of issue #20 (run 15 of BENCHMARKS.md, not bundled): the bundled model carried into a 24-channel
# projected latent and fine-tuned where the whole sampling schedule goes (about an hour on a 2-core CPU).
tiny-model-projected: $(READY)
	$(BIN)/sv4d-kit train --output runs/tiny-projected --config recipes/tiny_projected.json --resume --no-progress

# Experiment of issue #20 (run 16 of BENCHMARKS.md, not bundled): as tiny-model-projected, but trained on the "simple"
# world (one colour or bands per primitive, 1–3 primitives) with 3600 steps (about 90 minutes on a 2-core CPU).
tiny-model-simple: $(READY)
	$(BIN)/sv4d-kit train --output runs/tiny-simple --config recipes/tiny_simple.json --resume --no-progress

# Experiment of issue #20 (run 18 of BENCHMARKS.md): as tiny-model-simple, but the denoiser's V-scaling assumes each
# latent channel's own std (TrainConfig.sigma_data "per_channel"), 2000 steps (about 75 minutes on a 2-core CPU).
tiny-model-sigma-data: $(READY)
	$(BIN)/sv4d-kit train --output runs/tiny-sigma-data --config recipes/tiny_simple_sigma_data.json --resume \
		--no-progress

format: $(READY)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache notebooks/_executed notebooks/_screenshots
