# Quick start: `make train` (set up + train MAMBA on Point Robot), `make test` (set up + tests).
PY      := .venv/bin/python
STAMP   := .venv/.installed-$(shell cat setup.py | sha1sum | cut -c1-12)
CONFIG  ?= experiments/configs/point_robot.py
WORKDIR ?= runs/quickstart
# The quick-start budget: about 10 minutes on a 2-core CPU. Drop it for the paper's budget.
TRAIN_ARGS ?= --config.total_frames=60000 --config.eval_every_meta_episodes=50

.PHONY: setup train test bench clean-venv

setup: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[mjx,dev]"
	@bash launch/system_deps.sh
	@rm -f .venv/.installed-*; touch $(STAMP)

train: setup
	$(PY) -m experiments.train --config=$(CONFIG) --workdir=$(WORKDIR) $(TRAIN_ARGS) \
		$(if $(wildcard $(WORKDIR)/checkpoints),--resume,)

# Two test workers (the suite is mostly single-threaded compiles): ~9.5 min instead of ~15 on
# 2 cores. PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q tests $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

bench: setup
	$(PY) -m experiments.bench_envs
	$(PY) -m experiments.bench_agent
	$(PY) -m experiments.bench_train

clean-venv:
	rm -rf .venv
