# The two commands a newcomer needs: `make run` and `make test`. Everything they need is
# installed by the targets below, from the lock file, into folders of the project.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
VENV := .venv
PY := $(VENV)/bin/python
SERVICES_WITH_DATABASE := auth_service inference_service data_service slide_service

.PHONY: help install browser infra-tools run test lint typecheck format migrate train evaluate explore demo-model up down logs clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python 3.11
	@touch $@

# The slide viewer's OpenSeadragon, from the npm registry by its lock file, copied into the
# component's static folder; again only when the lock file changes.
VIEWER := frontend/components/slide_viewer
$(VIEWER)/static/vendor/.installed: $(VIEWER)/package.json $(VIEWER)/package-lock.json $(VIEWER)/build.mjs
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 or newer (Debian: apt-get install nodejs npm)." >&2; exit 1; }
	npm ci --prefix $(VIEWER) --no-audit --no-fund --loglevel=error
	npm run --prefix $(VIEWER) --silent build
	@touch $@

install: $(VENV)/.installed $(VIEWER)/static/vendor/.installed ## create .venv and install every component from uv.lock and the viewer's package-lock.json

# The browser tests drive Debian's Chromium; Playwright never downloads a browser of its own.
CHROMIUM_PATH ?= /usr/bin/chromium
export CHROMIUM_PATH

browser: ## install Debian's chromium and chromium-driver for the browser tests, if missing
	@if [ ! -x "$(CHROMIUM_PATH)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "Chromium is missing at $(CHROMIUM_PATH): install Debian's chromium package as root, or set CHROMIUM_PATH." >&2; exit 1; fi; \
	  if ! command -v apt-get >/dev/null; then \
	    echo "No apt-get here: install Chromium yourself and set CHROMIUM_PATH to its binary." >&2; exit 1; fi; \
	  echo "Installing Debian's chromium and chromium-driver (apt-get)..."; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# Offline checks of the deployment files use Debian's promtool (package prometheus), and a
# kubectl with Kustomize v5 (1.27 or newer; Debian's kubernetes-client is too old for it).
infra-tools: ## install promtool for the deployment checks if missing; check kubectl
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "promtool is missing: install Debian's prometheus package as root." >&2; exit 1; fi; \
	  if ! command -v apt-get >/dev/null; then \
	    echo "No apt-get here: install Prometheus (promtool) yourself." >&2; exit 1; fi; \
	  echo "Installing Debian's prometheus package (promtool) with apt-get..."; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@command -v kubectl >/dev/null || { echo "kubectl 1.27 or newer is needed to render infra/k8s (https://kubernetes.io/docs/tasks/tools/)." >&2; exit 1; }

run: install ## start PostgreSQL, migrations, every service and the frontend; Ctrl-C stops
	$(PY) -m devstack run

# Three workers on two cores: most of the suite waits on the processes it starts (stacks,
# browsers, PostgreSQL), so a third keeps the cores busy. Groups keep what tests
# share on one worker (tests/conftest.py).
TEST_WORKERS ?= 3

test: install browser infra-tools ## run the whole test suite against a real PostgreSQL and Chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy over the packages pyproject.toml names
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: install ## migrate every service's database (creating it if needed)
	@for service in $(SERVICES_WITH_DATABASE); do $(PY) -m $$service.migrate upgrade || exit 1; done

CONFIG ?= ml/config.yaml

train: install ## train a model version: make train DATA=path/to/dataset [CONFIG=ml/config.yaml]
	$(PY) -m ml.train --config $(CONFIG) $(if $(DATA),--data $(DATA))

evaluate: install ## evaluate the newest model version on its test split (MODEL=folder to choose)
	$(PY) -m ml.evaluate $(if $(MODEL),--model $(MODEL)) $(if $(DATA),--data $(DATA))

explore: install ## explore a dataset: make explore DATA=path/to/dataset
	$(PY) -m ml.explore_data --data $(DATA)

# The shipped demo version: the same synthetic data and recipe from their seeds every time.
demo-model: install ## train the shipped demo model again: models/demo-synthetic-1 (ml/demo.yaml)
	$(PY) -m ml.bootstrap --rebuild --models-dir models --data var/datasets/demo-synthetic

COMPOSE ?= docker compose

up: ## build and start the whole system with Docker Compose (needs .env; see README)
	$(COMPOSE) up --build --detach --wait

down: ## stop the compose deployment (volumes, and so the data, are kept)
	$(COMPOSE) down

logs: ## follow the compose deployment's logs
	$(COMPOSE) logs --follow --tail=100

clean: ## remove the virtual environment and tools (keeps var/, which holds data)
	rm -rf $(VENV) $(TOOLS)
