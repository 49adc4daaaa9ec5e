# The interface users, tests and CI share. Everything it needs is installed by
# the targets themselves (Python venv and Go-built tools, cached under ~/.cache).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV = $(shell hack/venv.sh)
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv deps demo test lint sanity unit integration cluster-build cluster-up cluster-down cluster-kubeconfig cluster-status bench-cluster bench-gpu-check bench-deploy molecule

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

venv: ## create the Python venv (cached under ~/.cache)
	@hack/venv.sh >/dev/null

deps: ## install system packages the tests need (Debian)
	@hack/deps.sh

cluster-build: ## build the cluster's upstream binaries (cached under ~/.cache)
	@cluster/build.sh all

cluster-up: venv ## start the local kwok cluster with GPU nodes; prints the kubeconfig path last
	@cluster/cluster.sh up

cluster-down: ## stop the local cluster and every process it started
	@cluster/cluster.sh down

cluster-kubeconfig: ## print the local cluster's kubeconfig path
	@cluster/cluster.sh kubeconfig

cluster-status: ## show the local cluster's components and nodes
	@cluster/cluster.sh status

demo: deps venv cluster-up ## from a fresh machine: bootstrap the local cluster, deploy a real model on its real node, ask it
	@hack/demo.sh

test: deps venv ## from a fresh machine: every check and test
	@hack/test.sh all

lint: venv ## yamllint and ansible-lint
	@hack/test.sh lint

sanity: venv ## ansible-test sanity on a copy of the collection
	@hack/test.sh sanity

unit: venv ## unit tests (no cluster)
	@hack/test.sh unit

integration: venv ## integration tests against the local cluster (or AI_SERVING_KUBECONFIG)
	@hack/test.sh integration

molecule: venv cluster-up ## molecule scenario `local` against the local cluster
	@molecule test -s local

bench-gpu-check: venv ## time gpu_capacity_check against 1k GPU nodes and 5k pods
	@python3 hack/bench_gpu_check.py

bench-deploy: venv cluster-up ## deploy_model.yml next to kubectl apply + rollout status: times and ratios
	@python3 hack/bench_deploy.py

bench-cluster: venv ## measure the local cluster: build/start times, memory, 1k nodes/5k pods
	@python3 hack/bench_cluster.py
