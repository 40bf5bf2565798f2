# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned to the CPU build that pip finds on these machines; it goes in first so that no
# dependency can pull a CUDA build.
TORCH := torch==2.13.0

.PHONY: setup demo test lint format bench figures clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]" "$(TORCH)"
	$(PY) -m pip install --quiet --no-deps "openmmtools==0.27.0"  # its alanine-dipeptide files
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/chapter7_moons.py --out out/chapter7

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check src tests examples benchmarks
	$(PY) -m ruff format --check src tests examples benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests examples benchmarks
	$(PY) -m ruff check --fix src tests examples benchmarks

figures: $(STAMP)
	$(PY) examples/chapter7_moons.py --out docs/chapter7 --seed 0
	$(PY) examples/flow_matching.py --out docs/flow_matching.png --seed 0
	$(PY) examples/glow_digits.py --out docs/glow_digits.png --seed 0
	$(PY) examples/flowavenet_sequences.py --out docs/flowavenet.png --seed 0
	$(PY) examples/torus.py --out docs/torus.png --seed 0
	$(PY) examples/boltzmann_generator.py --out docs/boltzmann.png --seed 0
	$(PY) examples/sbi_oscillator.py --out docs/sbi_oscillator.png --seed 0
	$(PY) examples/alanine_dipeptide.py --out docs/alanine_dipeptide.png --seed 0

BENCH_STAMP := $(VENV)/.bench-installed

# sbibm only for its files (the SBI benchmark's observations and reference posterior samples):
# its own pins are years old, and benchmarks/sbi_benchmark.py reads the files without importing it.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]" "$(TORCH)"
	$(PY) -m pip install --quiet --no-deps "sbibm==1.1.0"
	touch $(BENCH_STAMP)

# The chapter's own TensorFlow Probability code runs in a venv of its own (TensorFlow pins its
# own numpy); when it does not install, tfp_protocol.py says so in its section.
TFP_VENV := .venv-tfp
TFP_STAMP := $(TFP_VENV)/.installed
TFP := "tensorflow==2.19.*" "tf-keras==2.19.*" "tensorflow-probability==0.25.*" scikit-learn

$(TFP_STAMP):
	($(PYTHON) -m venv $(TFP_VENV) && $(TFP_VENV)/bin/pip install --quiet $(TFP) && touch $@) \
		|| echo "TensorFlow Probability did not install; tfp_protocol.py will say so"

bench: $(BENCH_STAMP) $(TFP_STAMP)
	cd benchmarks && ../$(PY) chapter_protocol.py && ../$(PY) tfp_protocol.py && ../$(PY) density2d.py && ../$(PY) flow_matching16d.py && ../$(PY) energy.py && ../$(PY) alanine.py && ../$(PY) throughput.py && ../$(PY) training_speed.py && ../$(PY) chunks.py && ../$(PY) learning_per_step.py && ../$(PY) real_data.py && ../$(PY) sbi_benchmark.py

clean:
	rm -rf $(VENV) $(TFP_VENV) out .pytest_cache
