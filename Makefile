# Vigil: `make run` serves the model on 127.0.0.1:8000, `make test` runs the test suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= data
MODEL ?= models/model.joblib
RUN_DIR ?= .run
NOTEBOOK_PORT ?= 8888
IMAGE ?= vigil:latest
CONTAINER ?= vigil

RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
NOTEBOOK := $(VENV)/.notebook-installed
SERVE_ENV := VIGIL_HOST=$(HOST) VIGIL_PORT=$(PORT) VIGIL_MODEL_PATH=$(MODEL)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(DEV): requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@ $(RUNTIME)

$(NOTEBOOK): requirements-notebook.txt $(DEV)
	$(PY) -m pip install -q -r requirements-notebook.txt
	@touch $@

$(DATA_DIR)/train.csv: | $(RUNTIME)
	$(PY) -m service sample-data --out-dir $(DATA_DIR)

$(MODEL): | $(DATA_DIR)/train.csv
	$(PY) -m service train --data $(DATA_DIR)/train.csv --out $(MODEL)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'

.PHONY: venv
venv: $(DEV) ## create .venv with runtime and dev dependencies

.PHONY: data
data: $(RUNTIME) ## write sample data (data/train.csv, data/test.csv)
	$(PY) -m service sample-data --out-dir $(DATA_DIR)

.PHONY: train
train: $(RUNTIME) | $(DATA_DIR)/train.csv ## train the model on data/train.csv into models/
	$(PY) -m service train --data $(DATA_DIR)/train.csv --out $(MODEL)

.PHONY: run
run: $(RUNTIME) $(MODEL) ## serve in the foreground on $(HOST):$(PORT) (makes data and a model if missing)
	$(SERVE_ENV) $(PY) -m service serve

.PHONY: test
test: $(DEV) ## lint and run the whole test suite
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

.PHONY: lint
lint: $(DEV) ## fix lint and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

.PHONY: run_service
run_service: $(RUNTIME) $(MODEL) ## serve in the background (pid and log in .run/)
	@mkdir -p $(RUN_DIR)
	@if [ -f $(RUN_DIR)/service.pid ] && kill -0 $$(cat $(RUN_DIR)/service.pid) 2>/dev/null; then \
		echo "already running (pid $$(cat $(RUN_DIR)/service.pid))"; exit 0; fi; \
	$(SERVE_ENV) nohup $(PY) -m service serve > $(RUN_DIR)/service.log 2>&1 & echo $$! > $(RUN_DIR)/service.pid; \
	for i in $$(seq 1 60); do \
		if curl -fsS http://$(HOST):$(PORT)/health/ready >/dev/null 2>&1; then \
			echo "Vigil is ready on http://$(HOST):$(PORT) (pid $$(cat $(RUN_DIR)/service.pid), log $(RUN_DIR)/service.log)"; exit 0; fi; \
		kill -0 $$(cat $(RUN_DIR)/service.pid) 2>/dev/null || { cat $(RUN_DIR)/service.log; exit 1; }; \
		sleep 0.5; done; echo "not ready after 30 s; see $(RUN_DIR)/service.log"; exit 1

.PHONY: stop_service
stop_service: ## stop the background service
	@if [ -f $(RUN_DIR)/service.pid ]; then kill $$(cat $(RUN_DIR)/service.pid) 2>/dev/null || true; \
		rm -f $(RUN_DIR)/service.pid; echo "stopped"; else echo "not running"; fi

.PHONY: run_notebook
run_notebook: $(NOTEBOOK) ## start JupyterLab in the background and print its URL
	@mkdir -p $(RUN_DIR)
	@if [ -f $(RUN_DIR)/notebook.pid ] && kill -0 $$(cat $(RUN_DIR)/notebook.pid) 2>/dev/null; then \
		echo "already running: $$(cat $(RUN_DIR)/notebook.url)"; exit 0; fi; \
	token=$$($(PY) -c 'import secrets; print(secrets.token_hex(24))'); \
	nohup $(VENV)/bin/jupyter lab --no-browser --ip 127.0.0.1 --port $(NOTEBOOK_PORT) \
		--ServerApp.root_dir=notebooks --IdentityProvider.token=$$token \
		> $(RUN_DIR)/notebook.log 2>&1 & echo $$! > $(RUN_DIR)/notebook.pid; \
	url="http://127.0.0.1:$(NOTEBOOK_PORT)/lab/tree/anomaly_training.ipynb?token=$$token"; \
	echo "$$url" > $(RUN_DIR)/notebook.url; \
	for i in $$(seq 1 60); do \
		if curl -fsS "http://127.0.0.1:$(NOTEBOOK_PORT)/api/status?token=$$token" >/dev/null 2>&1; then \
			echo "JupyterLab: $$url"; exit 0; fi; sleep 0.5; done; \
	echo "JupyterLab did not start; see $(RUN_DIR)/notebook.log"; exit 1

.PHONY: stop_notebook
stop_notebook: ## stop JupyterLab
	@if [ -f $(RUN_DIR)/notebook.pid ]; then kill $$(cat $(RUN_DIR)/notebook.pid) 2>/dev/null || true; \
		rm -f $(RUN_DIR)/notebook.pid $(RUN_DIR)/notebook.url; echo "stopped"; else echo "not running"; fi

.PHONY: build
build: ## build the Docker image (needs a Docker engine)
	docker build -t $(IMAGE) .

.PHONY: docker_run
docker_run: $(MODEL) ## run the image with ./models mounted read-only (needs Docker)
	docker run -d --name $(CONTAINER) -p $(PORT):8000 -v "$(CURDIR)/$(dir $(MODEL))":/app/models:ro $(IMAGE)
	@echo "http://127.0.0.1:$(PORT)  (docker logs -f $(CONTAINER))"

.PHONY: docker_stop
docker_stop: ## stop and remove the container
	docker rm -f $(CONTAINER)

.PHONY: clean
clean: ## remove generated data, models and run state (keeps .venv)
	rm -rf $(DATA_DIR) $(dir $(MODEL)) $(RUN_DIR) .pytest_cache .ruff_cache .hypothesis

include monitor/monitor.mk
include bench/bench.mk

# Kubernetes (deploy/kubernetes/): the kustomize base and an example overlay.
K8S_DIR ?= deploy/kubernetes/base
KUBECTL ?= $(VENV)/bin/kubectl

.PHONY: k8s-generate
k8s-generate: $(DEV) ## rewrite the PrometheusRule and dashboard ConfigMap from monitor/
	$(PY) -m deploy.kubernetes.generate

.PHONY: k8s-render
k8s-render: $(DEV) ## print the manifests of K8S_DIR (default the base; refuses stale generated files)
	@$(PY) -m deploy.kubernetes.generate --check
	@$(KUBECTL) kustomize $(K8S_DIR)
