// SPDX-License-Identifier: GPL-2.0
// The pod path's best case for benches/overlay-reference.sh --bypass (not part of Skiff): tc
// programs that skip cni0, IP forwarding and netfilter between a pod's veth and the device
// towards the other nodes, both ways, Cilium-style. Built per host with clang -target bpf and
// -D of POD_IP (host byte order), POD_IFINDEX (the pod's host-side veth), OUT_IFINDEX (the
// VXLAN device, or eth0 with host-gw), POD_MAC and GW_MAC (six comma-separated bytes each).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2

static const __u8 pod_mac[ETH_ALEN] = {POD_MAC};
static const __u8 gw_mac[ETH_ALEN] = {GW_MAC};

// The IPv4 header of an Ethernet frame, or NULL when there is none to forward.
static __always_inline struct iphdr *ipv4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ttl <= 1)
		return NULL;
	return ip;
}

// Forwarding as a router does: TTL - 1, new MACs.
static __always_inline int forward(struct __sk_buff *skb, struct iphdr *ip,
				   const __u8 *dst, const __u8 *src)
{
	__u16 old = *(__u16 *)&ip->ttl, new;
	struct ethhdr *eth;

	ip->ttl--;
	new = *(__u16 *)&ip->ttl;
	if (bpf_l3_csum_replace(skb, ETH_HLEN + offsetof(struct iphdr, check), old, new, 2) < 0)
		return -1;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	return 0;
}

// On the pod's host veth (ingress): what routes to the other nodes goes straight out. The
// neighbour table gives the destination MAC (VXLAN: the remote .0; host-gw: the next hop).
SEC("tc/pod_out")
int pod_out(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fib = {.family = AF_INET};
	struct iphdr *ip = ipv4(skb);

	if (!ip)
		return TC_ACT_OK;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = skb->ingress_ifindex;
	// tot_len 0: the kernel checks the MTU against the skb, which knows about GSO.
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != OUT_IFINDEX)
		return TC_ACT_OK;
	if (forward(skb, ip, fib.dmac, fib.smac) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(fib.ifindex, 0);
}

// On the device from the other nodes (ingress): frames for the pod go into its namespace.
SEC("tc/pod_in")
int pod_in(struct __sk_buff *skb)
{
	struct iphdr *ip = ipv4(skb);

	if (!ip || ip->daddr != bpf_htonl(POD_IP))
		return TC_ACT_OK;
	if (forward(skb, ip, pod_mac, gw_mac) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(POD_IFINDEX, 0);
}

char LICENSE[] SEC("license") = "GPL";
