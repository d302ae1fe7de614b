//! `[node]`: the node agent (kubelet) of this process.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Run a node agent in this process (register the Node, run its pods).
    pub enabled: bool,
    /// The kubelet port: container logs and exec, proxied to by the API server.
    pub listen_addr: SocketAddr,
    /// The address other nodes and the API server use for this node; empty: the first
    /// non-loopback IPv4 address of the host (or 127.0.0.1).
    pub address: String,
    /// Pod subnet used until the cluster assigns `spec.podCIDR`; empty: wait for one.
    pub pod_cidr: String,
    /// Images, pod directories, logs; empty: `<data_dir>/node`.
    pub state_dir: String,
    /// Runtime state (netns bind mounts, runc state); per node, so several nodes can share a host.
    pub run_dir: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// Registries reached over plain HTTP (`host:port`).
    pub insecure_registries: Vec<String>,
    pub max_pods: u32,
    /// How often the node's Lease is renewed.
    pub lease_renew_seconds: u64,
    /// Lease duration written into the Lease.
    pub lease_duration_seconds: i32,
    /// How often node status (conditions, capacity) is written.
    pub status_update_seconds: u64,
    /// Name of the pod bridge.
    pub bridge: String,
    /// Nameservers written into pods' resolv.conf; empty: the host's.
    pub dns_servers: Vec<String>,
    /// Most processes (threads included) one container may run (the pids cgroup); 0: no
    /// limit. Stops a fork bomb from exhausting the node's pids.
    pub pids_limit: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 10250)),
            address: String::new(),
            pod_cidr: String::new(),
            state_dir: String::new(),
            run_dir: PathBuf::from("/run/skiff"),
            runtime: PathBuf::from("/usr/sbin/runc"),
            insecure_registries: Vec::new(),
            max_pods: 110,
            lease_renew_seconds: 10,
            lease_duration_seconds: 40,
            status_update_seconds: 10,
            bridge: "cni0".into(),
            dns_servers: Vec::new(),
            pids_limit: 4096,
        }
    }
}
