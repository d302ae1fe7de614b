# Skiff: `make lab` and `make test` are the two quick-start commands (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
LAB_DIR ?= target/lab

.PHONY: deps build lint test lab bench bench-etcd

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --locked

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

# Every test, with end-to-end tests required (a skipped one fails the run).
test: deps lint
	SKIFF_E2E_REQUIRED=1 $(CARGO) test --workspace --locked

# Until the lab issue lands: one single-node server in the foreground.
lab: build
	@mkdir -p $(LAB_DIR)
	@./target/release/skiff kubeconfig --server http://127.0.0.1:6443 > $(LAB_DIR)/kubeconfig
	@echo "skiff: 'make lab' runs a single-node 'skiff server' in the foreground for now (the three-node lab comes with 'skiff lab up'); Ctrl-C stops it."
	@echo "skiff: API http://127.0.0.1:6443 (in another shell: export KUBECONFIG=$(CURDIR)/$(LAB_DIR)/kubeconfig; kubectl get ns)"
	@echo "skiff: health http://127.0.0.1:9101/readyz, metrics http://127.0.0.1:9101/metrics, data in $(LAB_DIR)/n1"
	./target/release/skiff server --node-name n1 --data-dir $(LAB_DIR)/n1 \
		--peer-listen-addr 127.0.0.1:2380 --http-listen-addr 127.0.0.1:9101 --api-addr 127.0.0.1:6443 --set node.enabled=false

bench: deps
	$(CARGO) bench --locked --bench store

bench-etcd: deps
	benches/compare-etcd.sh
