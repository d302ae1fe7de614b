#!/usr/bin/env bash
# The ceiling for `cargo bench --bench overlay` on this machine: the same topology built with
# plain `ip` commands, no Skiff, no nftables, no conntrack (root). Two host namespaces on an
# underlay bridge, each with a flannel-style cni0 bridge and one pod namespace; pod -> pod
# over kernel VXLAN (VNI 1, port 8472, static neighbour and FDB entries) and over host-gw
# routes, and host -> host over the underlay, iperf3 runs alternating as in the Skiff bench.
# With vxlan it also measures node -> node through the VXLAN devices alone (host 1 to host 2's
# 10.244.2.0: no pod, no bridge, no forwarding), the ceiling of any datapath built on them.
# Prints the medians and, last,
# `reference ratios to underlay: vxlan X.XX vxlan-node N.NN host-gw Y.YY`.
# --underlay-gso B (as the Skiff bench; default 196608, 65536 = the kernel's default) sets the
# underlay devices' gso/gro_ipv4_max_size and, for host-gw, the pod devices' too, as Skiff does.
# --bypass attaches benches/overlay-bypass.bpf.c (tc/eBPF; installs clang and libbpf-dev) so that
# pod traffic skips cni0, forwarding and netfilter: the best a pod path can do on these devices.
# Usage: benches/overlay-reference.sh [--seconds S] [--rounds N] [--underlay-gso B] [--bypass]
#        (REF_BACKENDS="host-gw" for one backend)
set -euo pipefail

seconds=5
rounds=3
gso=196608
bypass=""
while (($#)); do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --underlay-gso) gso=$2; shift 2 ;;
    --bypass) bypass=yes; shift ;;
    *) echo "overlay-reference: unknown argument $1" >&2; exit 2 ;;
    esac
done
if ((EUID != 0)); then
    echo "overlay-reference: needs root (it creates network namespaces)" >&2
    exit 1
fi
command -v iperf3 >/dev/null || { echo "overlay-reference: iperf3 missing (apt-get install iperf3)" >&2; exit 1; }
if [[ $bypass ]]; then "$(dirname "$0")/../scripts/install-deps.sh" clang libbpf-dev; fi

NS=(ref-ul ref-h1 ref-h2 ref-p1 ref-p2)
objs=$(mktemp -d)
cleanup() {
    for n in "${NS[@]}"; do
        # shellcheck disable=SC2046 # one pid per word
        kill $(ip netns pids "$n" 2>/dev/null) 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
}
trap 'cleanup; rm -rf "$objs"' EXIT INT TERM

# Sets gso_ipv4_max_size and gro_ipv4_max_size of device $2 in namespace $1 to $gso with one
# RTM_NEWLINK (Debian 12's iproute2 predates these attributes, IFLA 63 and 64).
set_gso() {
    ip netns exec "$1" python3 - "$2" "$gso" <<'PY'
import socket, struct, sys
dev, size = sys.argv[1], int(sys.argv[2])
attrs = b"".join(struct.pack("=HHI", 8, t, size) for t in (63, 64))
body = struct.pack("=BxHiII", 0, 0, socket.if_nametoindex(dev), 0, 0) + attrs
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.send(struct.pack("=IHHII", 16 + len(body), 16, 1 | 4, 1, 0) + body)  # RTM_NEWLINK, REQUEST|ACK
err = struct.unpack("=i", s.recv(4096)[16:20])[0]
if err:
    sys.exit(f"{dev}: gso_ipv4_max_size {size}: error {err}")
PY
}

# The ifindex and the MAC of device $2 in namespace $1.
index() { ip -n "$1" -o link show "$2" | cut -d: -f1; }
mac() { ip -n "$1" link show "$2" | awk '/link\/ether/ {print $2}'; }

# Node K at 10.90.0.1K on the underlay, its pod at 10.244.K.2 behind cni0 (10.244.K.1).
build() {
    cleanup
    for n in "${NS[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
    ip -n ref-ul link add br0 type bridge
    ip -n ref-ul link set br0 up
    for k in 1 2; do
        local h=ref-h$k p=ref-p$k
        ip -n ref-ul link add n$k type veth peer name eth0 netns $h
        ip -n ref-ul link set n$k master br0 up
        ip -n $h addr add 10.90.0.1$k/24 dev eth0
        ip -n $h link set eth0 up
        ip netns exec $h sysctl -qw net.ipv4.ip_forward=1
        ip -n $h link add cni0 type bridge
        ip -n $h addr add 10.244.$k.1/24 dev cni0
        ip -n $h link set cni0 up
        ip -n $h link add veth$k type veth peer name eth0 netns $p
        ip -n $h link set veth$k master cni0 up
        ip -n $p addr add 10.244.$k.2/24 dev eth0
        ip -n $p link set eth0 up
        ip -n $p route add default via 10.244.$k.1
    done
    if [[ $1 == vxlan ]]; then
        local vtep=()
        for k in 1 2; do
            local h=ref-h$k
            ip -n $h link add flannel.1 type vxlan id 1 dstport 8472 local 10.90.0.1$k dev eth0 nolearning
            ip -n $h addr add 10.244.$k.0/32 dev flannel.1
            ip -n $h link set flannel.1 mtu 1450 up
            ip -n $h link set veth$k mtu 1450
            ip -n ref-p$k link set eth0 mtu 1450
            vtep[k]=$(mac $h flannel.1)
        done
        for k in 1 2; do
            local h=ref-h$k o=$((3 - k))
            ip -n $h route add 10.244.$o.0/24 via 10.244.$o.0 dev flannel.1 onlink
            ip -n $h neigh add 10.244.$o.0 lladdr "${vtep[o]}" dev flannel.1 nud permanent
            bridge -n $h fdb append "${vtep[o]}" dev flannel.1 dst 10.90.0.1$o
        done
    else
        ip -n ref-h1 route add 10.244.2.0/24 via 10.90.0.12
        ip -n ref-h2 route add 10.244.1.0/24 via 10.90.0.11
    fi
    # A bridge takes a size above 64 KiB only once it has ports that do: ports first.
    for k in 1 2; do
        set_gso ref-ul n$k
        set_gso ref-h$k eth0
        if [[ $1 == host-gw ]]; then
            set_gso ref-p$k eth0
            set_gso ref-h$k veth$k
            set_gso ref-h$k cni0
        fi
    done
    set_gso ref-ul br0
    if [[ $bypass ]]; then attach_bypass "$1" 1; attach_bypass "$1" 2; fi
}

# Attaches the bypass programs on host $2 for backend $1 (towards the other node: the VXLAN
# device or eth0); c_bytes writes a MAC as a C initialiser.
c_bytes() { sed 's/^/0x/; s/:/,0x/g' <<<"$1"; }
attach_bypass() {
    local h=ref-h$2 out=eth0 obj=$objs/bypass$2.o
    if [[ $1 == vxlan ]]; then out=flannel.1; fi
    clang -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DPOD_IP="0x0af40${2}02" \
        -DPOD_IFINDEX="$(index $h veth$2)" -DOUT_IFINDEX="$(index $h $out)" \
        -DPOD_MAC="$(c_bytes "$(mac ref-p$2 eth0)")" -DGW_MAC="$(c_bytes "$(mac $h cni0)")" \
        -c "$(dirname "$0")/overlay-bypass.bpf.c" -o "$obj"
    for dev in veth$2 $out; do ip netns exec $h tc qdisc add dev $dev clsact; done
    ip netns exec $h tc filter add dev veth$2 ingress bpf da obj "$obj" sec tc/pod_out
    ip netns exec $h tc filter add dev $out ingress bpf da obj "$obj" sec tc/pod_in
}

# Gbit/s from namespace $1 to $3 served in namespace $2 (a run that ends without a result,
# which iperf3 3.12 sometimes reports with exit status 0, is repeated; at most 3 times).
gbits() {
    local srv out g
    for _ in 1 2 3; do
        ip netns exec "$2" iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
        srv=$!
        out=""
        for _ in $(seq 50); do
            out=$(ip netns exec "$1" iperf3 -c "$3" -J -O 1 -t "$seconds" 2>/dev/null) && break
            sleep 0.1 # the server may not listen yet (bounded: 50 tries)
        done
        kill "$srv" 2>/dev/null || true # served its one client, or none came
        wait "$srv" 2>/dev/null || true
        if g=$(python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))' <<<"$out" 2>/dev/null); then
            echo "$g"
            return
        fi
    done
    echo "overlay-reference: iperf3 $1 -> $3 gave no result" >&2
    exit 1
}

median() { tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END {print v[int(NR/2)+1]}'; }

echo "TCP, 1 stream, ${seconds} s per run (iperf3), median of ${rounds} alternating runs, Gbit/s; underlay gso_ipv4_max_size $gso; pod path bypass: ${bypass:-no}; vxlan-node: node -> node through the VXLAN devices"
printf '%-12s %14s %14s %8s\n' backend "pod -> pod" underlay ratio
ratios=()
# Prints the row of $1 (median of the runs in $2) against the underlay's median $3.
row() {
    local m r
    m=$(median <<<"${2# }")
    r=$(python3 -c "print('%.2f' % ($m / $3))")
    printf '%-12s %14s %14s %8s\n' "$1" "$m" "$3" "$r"
    ratios+=("$1 $r")
}

for backend in ${REF_BACKENDS:-vxlan host-gw}; do
    build $backend
    pods="" hosts="" nodes=""
    for _ in $(seq "$rounds"); do
        pods+=" $(gbits ref-p1 ref-p2 10.244.2.2)"
        hosts+=" $(gbits ref-h1 ref-h2 10.90.0.12)"
        if [[ $backend == vxlan ]]; then nodes+=" $(gbits ref-h1 ref-h2 10.244.2.0)"; fi
    done
    u=$(median <<<"${hosts# }")
    row $backend "$pods" "$u"
    if [[ $backend == vxlan ]]; then row vxlan-node "$nodes" "$u"; fi
done
echo "reference ratios to underlay: ${ratios[*]}"
