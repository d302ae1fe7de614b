# Skiff: `make lab` and `make test` are the two quick-start commands (see README.md).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build lint test lab bench bench-etcd fuzz

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

# The three-node lab (namespaces skiff-ul, skiff-n1..3; API on https://127.0.0.1:6443 with the
# CA and admin token in the lab's kubeconfig, Prometheus on http://127.0.0.1:9090) with the
# echo chart installed. Running it again changes nothing.
SKIFF := ./target/release/skiff
LAB_IMAGE := 10.90.0.1:5000/busybox:latest

lab: build
	$(SKIFF) lab up --prometheus
	@eval "$$($(SKIFF) lab env)"; $(SKIFF) chart upgrade --install echo charts/echo --set replicas=6 --set image=$(LAB_IMAGE)
	@echo
	@echo "next steps:"
	@echo "  eval \"\$$($(SKIFF) lab env)\"   # KUBECONFIG (CA + admin token) and SKIFF_LAB_* for this shell"
	@echo "  kubectl get pods -o wide          # echo pods on every node"
	@echo "  curl -s 'http://127.0.0.1:9090/api/v1/query?query=up'   # Prometheus scraping nodes and pods"
	@echo "  $(SKIFF) lab status               # nodes, leader, endpoints"
	@echo "  $(SKIFF) lab down                 # remove everything"

bench: deps
	$(CARGO) bench --locked --bench store

bench-etcd: deps
	benches/compare-etcd.sh

# cargo-fuzz over the decoders of untrusted input (fuzz/), FUZZ_SECONDS per target; see
# scripts/fuzz.sh for the other settings. Not part of `test`, which replays the committed
# corpus without instrumentation (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 600

fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh
