#!/usr/bin/env bash
# Runs the store benchmark against Skiff (in-process, 3 replicas) and a 3-member etcd on
# loopback, one after the other in the same run, and prints both rows plus the ratio line.
# Usage: benches/compare-etcd.sh [--seconds N] [--writers 1,64]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh etcd-server etcd-client

work=$(mktemp -d /tmp/skiff-etcd-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

base=${ETCD_BENCH_PORT:-23790}
cluster=""
for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$((base + 10 + i))"
done
endpoints=""
for i in 1 2 3; do
    client="http://127.0.0.1:$((base + i))"
    peer="http://127.0.0.1:$((base + 10 + i))"
    endpoints+="${endpoints:+,}$client"
    etcd --name "e$i" --data-dir "$work/e$i" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$cluster" --initial-cluster-token skiff-bench \
        --initial-cluster-state new --logger zap --log-level error \
        >"$work/e$i.log" 2>&1 &
    pids+=($!)
done

deadline=$((SECONDS + 30))
until ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1; do
    if [ $SECONDS -gt $deadline ]; then
        echo "compare-etcd: etcd did not become healthy; logs in $work" >&2
        cat "$work"/e*.log >&2
        exit 1
    fi
    sleep 0.2
done
echo "etcd $(etcd --version | head -1 | awk '{print $3}') on $endpoints"

cargo bench --bench store -- --etcd "$endpoints" "$@"
