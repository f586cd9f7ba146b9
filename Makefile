# landscape: the two commands of the README.
#   make run   — set everything up on a fresh Debian/Ubuntu machine and run the default study
#   make test  — run the test suite (what CI runs)
PYTHON ?= python3.11
VENV   ?= .venv
# one job per core: every computing job is single-threaded, and more jobs than cores is slower
# (default study on 2 cores: --cores 2 9 min 5 s, --cores 4 10 min 32 s)
CORES  ?= $(shell nproc 2>/dev/null || echo 2)
BIN    := $(VENV)/bin
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: run test setup data report bench lint clean docs

# Local runs point SLURM at an empty config: the SLURM executor plugin (installed for the SLURM
# profile and its tests) runs `scontrol show config` at every Snakemake start, which waits 10 s
# where a SLURM client is installed but no controller answers (measured: 11.0 s vs 1.6 s for a
# no-op dry run). Jobs of a local run never use SLURM.
LOCAL := SLURM_CONF=/dev/null

# the study, then Snakemake's HTML report (the findings page is also results/findings.html)
run: setup data
	$(LOCAL) $(BIN)/snakemake --cores $(CORES)
	$(LOCAL) $(BIN)/snakemake --report results/report.html

report: setup
	$(LOCAL) $(BIN)/snakemake --report results/report.html

# one pytest worker per core (pytest-xdist); a test file stays on one worker, so its module
# fixtures run once, and files start in the order tests/conftest.py gives (the longest first)
test: setup data
	$(BIN)/python -m pytest -q -n $(CORES) --dist loadfile --no-loadscope-reorder

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Fashion-MNIST from Debian's package where apt exists; otherwise the prepare_data stage
# downloads it with torchvision if the config says data.download: true.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q dataset-fashion-mnist; \
	else echo "no apt: set data.download: true in config.yaml (or data.root) to fetch Fashion-MNIST"; fi

bench: setup data
	$(BIN)/pip install -q -e '.[bench]'
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: setup
	$(BIN)/ruff check landscape tests bench
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake

docs: setup
	$(BIN)/python -m landscape docs write
