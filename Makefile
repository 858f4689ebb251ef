# crm-ltv: every target installs what it needs first (via `setup`), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The project home the commands use (CRM_LTV_HOME, else this checkout): its sample and its log
HOME_DIR := $(or $(CRM_LTV_HOME),$(CURDIR))
# Checked for the targets that use the home: make takes no space in a file name, and `make -C`
# would read a relative home from the checkout (the shell's $PWD is where it was typed)
HOME_TARGETS := data features train tune experiments mlflow-ui serve bento bench-serve bench-overload
ifneq ($(filter $(HOME_TARGETS),$(MAKECMDGOALS)),)
ifneq ($(word 2,$(HOME_DIR)),)
$(error the project home "$(HOME_DIR)" has a space, which make cannot take in a file name: use `crm-ltv --home` there, or a home without spaces)
endif
ifneq ($(and $(CRM_LTV_HOME),$(filter-out /%,$(CRM_LTV_HOME)),$(filter-out $(CURDIR),$(realpath $(PWD)))),)
$(error CRM_LTV_HOME=$(CRM_LTV_HOME) is relative, and make runs in $(CURDIR), not $(PWD): give an absolute path, e.g. CRM_LTV_HOME=$$PWD/$(CRM_LTV_HOME))
endif
endif
SAMPLE := $(HOME_DIR)/data/sample/transactions.csv
# A recipe that fails after changing its target removes it, so the next make runs it again: a
# `crm-ltv data` that failed mid-write left part of transactions.csv, which the next `make data`
# took for done (tester I). .venv/.installed is touched last: a failed install never changes it.
.DELETE_ON_ERROR:
# What features/train/tune read first: the sample, unless the home's data.yaml (or .yml) names
# a transactions file: a `path:` in its transactions block that is not null
DATA_CONFIG := $(firstword $(wildcard $(HOME_DIR)/configs/data.yaml $(HOME_DIR)/configs/data.yml))
OWN_DATA := $(if $(DATA_CONFIG),$(shell awk '/^transactions:/ {t = 1; if (/path:/) print; next} /^[^[:space:]\#]/ {t = 0} t && /^[[:space:]]+path:/' $(DATA_CONFIG) | grep -v -i -E 'path:[[:space:]]*(null|~)[[:space:]]*([,}\#]|$$)'))
DATA := $(if $(OWN_DATA),$(INSTALLED),$(SAMPLE))

.DEFAULT_GOAL := help
TRIALS ?=
PORT_UI ?= 5000
MLFLOW_HOME ?= $(HOME_DIR)
PORT ?= 3000
TEST_WORKERS ?= 2
# The service's decision log, as the home's configs/serving.yaml (else this checkout's) names it,
# relative to the home
SERVING_CONFIG := $(firstword $(wildcard $(HOME_DIR)/configs/serving.yaml) configs/serving.yaml)
LOG_NAME := $(or $(shell sed -n 's/^decision_log: *["'"'"']\{0,1\}\([^ #"'"'"']*\).*/\1/p' $(SERVING_CONFIG)),logs/decisions.jsonl)
DECISIONS ?= $(if $(filter /%,$(LOG_NAME)),$(LOG_NAME),$(HOME_DIR)/$(LOG_NAME))
.PHONY: help setup data features train tune experiments mlflow-ui serve bento test lint format bench-features bench-serve bench-overload bench-models bench-real bench-scale runtime-lock clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

setup: $(INSTALLED) ## create .venv and install the project with pinned versions

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $@

$(SAMPLE): $(INSTALLED) $(firstword $(wildcard $(HOME_DIR)/configs/sample.yaml) configs/sample.yaml)
	$(BIN)/crm-ltv data

data: $(SAMPLE) ## generate the built-in sample data into data/sample/ (once; `make clean` to redo)

features: $(DATA) ## build the feature table at the latest cutoff into data/features.parquet
	$(BIN)/crm-ltv features

train: $(DATA) ## train, evaluate and register the churn and LTV models (MLflow), with baselines
	$(BIN)/crm-ltv train

tune: $(DATA) ## Optuna tuning of both models (TRIALS=N per model); the next `make train` uses it
	$(BIN)/crm-ltv tune $(if $(TRIALS),--trials $(TRIALS))

# A home with its own transactions gets no sample: its campaigns are those configs/data.yaml
# names, else those `crm-ltv outcomes` writes from the service's decision log (so outcomes runs
# first; without either, `ab` says what to do and the target stops there), and the policy
# evaluation simulated on the sample is left out.
experiments: $(DATA) ## A/B analysis of the campaigns (the sample's; with your own data, data.yaml's or those of the service's decisions), a test plan, cohorts and LTV:CAC, uplift models, outcomes of the service's decisions, policy evaluation (MLflow; after make train)
ifeq ($(OWN_DATA),)
	$(BIN)/crm-ltv ab
	$(BIN)/crm-ltv ab --by lifecycle_stage
	$(BIN)/crm-ltv plan-ab --baseline-rate 0.09 --lift 0.2
	$(BIN)/crm-ltv cohorts
	$(BIN)/crm-ltv uplift --pool-controls
	$(BIN)/crm-ltv policy-eval
	@if [ -s "$(DECISIONS)" ]; then \
	  $(BIN)/crm-ltv outcomes --decisions "$(DECISIONS)" && $(BIN)/crm-ltv policy-eval --decisions "$(DECISIONS)"; \
	else echo "no $(DECISIONS) yet (make serve writes it): policy evaluation above on a history simulated on the sample"; fi
else
	$(BIN)/crm-ltv plan-ab --baseline-rate 0.09 --lift 0.2
	$(BIN)/crm-ltv cohorts
	@if [ -s "$(DECISIONS)" ]; then $(BIN)/crm-ltv outcomes --decisions "$(DECISIONS)"; \
	else echo "no $(DECISIONS) yet (make serve writes it): ab and uplift read the campaigns configs/data.yaml names, if any"; fi
	$(BIN)/crm-ltv ab
	$(BIN)/crm-ltv ab --by lifecycle_stage
	$(BIN)/crm-ltv uplift --pool-controls
	@if [ -s "$(DECISIONS)" ]; then $(BIN)/crm-ltv policy-eval --decisions "$(DECISIONS)"; fi
endif

mlflow-ui: $(INSTALLED) ## MLflow UI on http://127.0.0.1:5000 (PORT_UI=); prints the links to each runs table
	$(BIN)/crm-ltv --home "$(MLFLOW_HOME)" mlflow-ui --port $(PORT_UI)

serve: $(INSTALLED) ## serve POST /score on http://127.0.0.1:3000 (PORT=) with the champion models
	$(BIN)/crm-ltv serve --port $(PORT)

bento: $(INSTALLED) ## build a Bento carrying the champion models (starts without the registry)
	$(BIN)/crm-ltv bento

test: $(INSTALLED) ## run the test suite (TEST_WORKERS=2 processes: test files side by side)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(INSTALLED) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-features: $(INSTALLED) ## feature-builder throughput and memory on 10M transactions
	$(BIN)/python benchmarks/bench_features.py

bench-models: $(INSTALLED) ## LightGBM vs BG/NBD + Gamma-Gamma and RFM cells on the built-in sample, as figures
	$(BIN)/python benchmarks/bench_models.py

bench-real: $(INSTALLED) ## backtest LightGBM vs BG/NBD + Gamma-Gamma on Online Retail II (benchmarks/data/) at four origins
	$(BIN)/python benchmarks/bench_real.py

SCALE ?=
bench-scale: $(INSTALLED) ## Dask: features, training, scoring on 100M transactions (SCALE="--transactions 10000000" scales down)
	nice -n 15 $(BIN)/python benchmarks/bench_scale.py $(SCALE)

# What a scoring runtime (a Bento) needs; `make runtime-lock` pins it from requirements.lock.
RUNTIME_PACKAGES := anyio bentoml httptools lightgbm numpy pandas pyarrow pydantic pyyaml scikit-learn scipy typing_extensions uvloop

runtime-lock: ## regenerate requirements-runtime.lock (the Bento's packages) from requirements.lock's pins
	rm -rf build/runtime-venv
	$(PYTHON) -m venv build/runtime-venv
	build/runtime-venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock $(RUNTIME_PACKAGES)
	{ echo "# The runtime lock: what a Bento (and any scoring runtime) installs beside the project's wheel,"; \
	  echo "# installed with --no-deps. Made by \`make runtime-lock\` from requirements.lock's pins (Python 3.11)."; \
	  build/runtime-venv/bin/python -m pip freeze --exclude-editable; } > requirements-runtime.lock

bench-serve: $(SAMPLE) ## service latency at 50/100/200 req/s and batch throughput, vs mlflow models serve
	$(BIN)/python benchmarks/bench_serve.py

bench-overload: $(SAMPLE) ## service under overload: 200s, 503s (max_in_flight) and latency at 400/800/1200 calls/s
	$(BIN)/python benchmarks/bench_overload.py

# What `make clean` removes: the checkout's own outputs, never a CRM_LTV_HOME's (a home may hold
# a shop's only runs and registry, or be a folder with other things called data/ or logs/)
CLEANED := data reports logs mlflow.db mlflow.db.lock mlartifacts optuna.db optuna.db.lock .pytest_cache .ruff_cache
ifneq ($(filter clean,$(MAKECMDGOALS)),)
# the home as the shell typed it (a relative one from $PWD), resolved; a missing one as given
CLEAN_HOME := $(if $(filter /%,$(CRM_LTV_HOME)),$(CRM_LTV_HOME),$(PWD)/$(CRM_LTV_HOME))
ifneq ($(and $(CRM_LTV_HOME),$(filter-out $(CURDIR),$(or $(realpath $(CLEAN_HOME)),$(CLEAN_HOME)))),)
$(error CRM_LTV_HOME=$(CRM_LTV_HOME) is not this checkout, and `make clean` removes the checkout's own $(CLEANED) (its runs, registry and studies), not the home's: to clean the checkout run `env -u CRM_LTV_HOME make -C $(CURDIR) clean`; to clean the home, remove the files you mean to there yourself)
endif
endif
clean: ## remove this checkout's generated data, reports and tracking stores (keeps .venv; refused with CRM_LTV_HOME set elsewhere)
	rm -rf $(CLEANED)
