//! Three hosts for the overlay tests, all inside namespaces the test creates: an underlay
//! namespace holding a bridge, and three host namespaces each with a veth onto it (host K at
//! 10.90.0.(10+K)/24, as the lab's address plan), each running a `skiff server` (one
//! 3-replica control plane, a node agent and an overlay agent per host). Host 1 also runs the
//! registry, on its underlay address. The underlay allows BIG TCP (GSO packets up to
//! `UNDERLAY_GSO`, as on a host whose admin raised `gso_ipv4_max_size`) unless started with
//! another size. Drop stops everything and removes the namespaces.
//! Needs `crate::node_host` and `crate::servers` at the crate root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::node_host::{in_netns, netns_path, new_netns, run, NodeHost};

pub const REGISTRY: &str = "10.90.0.11:5000";
pub const IMAGE: &str = "10.90.0.11:5000/busybox:latest";
pub const BRIDGE: &str = "br0";
/// The underlay devices' `gso_ipv4_max_size` (BIG TCP; 192 KiB, Cilium's default).
pub const UNDERLAY_GSO: u32 = 196_608;

/// `gso_ipv4_max_size` of `dev` in namespace `ns`, after setting it (and the GRO limit) to
/// `set` if given. Through rtnetlink: Debian 12's iproute2 predates these attributes.
pub fn link_gso(ns: &Path, dev: &str, set: Option<u32>) -> u32 {
    use futures_util::TryStreamExt;
    use netlink_packet_route::link::LinkAttribute;
    let dev = dev.to_string();
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (conn, h, _) = rtnetlink::new_connection().expect("netlink");
            tokio::spawn(conn);
            let get = || async {
                let mut links = h.link().get().match_name(dev.clone()).execute();
                let link = links.try_next().await.expect("get link");
                link.unwrap_or_else(|| panic!("no link {dev}"))
            };
            if let Some(size) = set {
                let msg = rtnetlink::LinkUnspec::new_with_index(get().await.header.index)
                    .append_extra_attribute(LinkAttribute::GsoIpv4MaxSize(size))
                    .append_extra_attribute(LinkAttribute::GroIpv4MaxSize(size))
                    .build();
                h.link()
                    .set(msg)
                    .execute()
                    .await
                    .unwrap_or_else(|e| panic!("{dev}: gso_ipv4_max_size {size}: {e}"));
            }
            get()
                .await
                .attributes
                .into_iter()
                .find_map(|a| match a {
                    LinkAttribute::GsoIpv4MaxSize(s) => Some(s),
                    _ => None,
                })
                .expect("the kernel reports gso_ipv4_max_size (6.3+)")
        })
    })
}

pub fn underlay_ip(k: usize) -> String {
    format!("10.90.0.{}", 10 + k)
}

/// The underlay namespace; deleted on drop (after the hosts, which are declared first).
pub struct Netns(pub String);

impl Netns {
    pub fn path(&self) -> PathBuf {
        netns_path(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Lab {
    /// hosts[0] is host 1 (node `n1`).
    pub hosts: Vec<NodeHost>,
    pub underlay: Netns,
}

/// A pod the lab started: its address and network namespace.
pub struct RunningPod {
    pub name: String,
    pub ip: String,
    pub netns: PathBuf,
}

impl Lab {
    /// `backends[k]`: the overlay backend of host k+1.
    pub fn start(backends: [&str; 3]) -> Lab {
        Self::start_with(backends, UNDERLAY_GSO)
    }

    /// `gso`: the underlay devices' `gso_ipv4_max_size` (65536 is the kernel's default).
    pub fn start_with(backends: [&str; 3], gso: u32) -> Lab {
        let underlay = Netns(new_netns("sku"));
        let u = underlay.0.as_str();
        run(Command::new("ip").args(["-n", u, "link", "add", BRIDGE, "type", "bridge"]));
        run(Command::new("ip").args(["-n", u, "link", "set", BRIDGE, "up"]));
        let members: Vec<String> = (1..=3)
            .map(|k| format!("\"n{k}={}:2380\"", underlay_ip(k)))
            .collect();
        let mut hosts = Vec::new();
        for (i, backend) in backends.iter().enumerate() {
            let k = i + 1;
            let name = new_netns("skh");
            let port = format!("u{k}");
            run(Command::new("ip").args([
                "-n", u, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &name,
            ]));
            run(Command::new("ip").args(["-n", u, "link", "set", &port, "master", BRIDGE, "up"]));
            let ip = underlay_ip(k);
            run(Command::new("ip").args([
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]));
            run(Command::new("ip").args(["-n", &name, "link", "set", "eth0", "up"]));
            link_gso(&underlay.path(), &port, Some(gso));
            link_gso(&netns_path(&name), "eth0", Some(gso));
            let host = NodeHost::create(name, (k == 1).then_some(REGISTRY));
            let dir = host.dir.path();
            host.write_config(&format!(
                "node_name = \"n{k}\"\ndata_dir = \"{data}\"\ninitial_cluster = [{members}]\npeer_listen_addr = \"{ip}:2380\"\nhttp_listen_addr = \"127.0.0.1:9101\"\napi_addr = \"0.0.0.0:6443\"\n[node]\naddress = \"{ip}\"\nlisten_addr = \"{ip}:10250\"\nrun_dir = \"{run}\"\ninsecure_registries = [\"{REGISTRY}\"]\nlease_renew_seconds = 2\nstatus_update_seconds = 2\n[overlay]\nbackend = \"{backend}\"\nresync_seconds = 5\n[security]\ntoken = \"{token}\"\n{join}",
                // Host 1 creates the CA; the others join through its API on the underlay.
                token = crate::servers::TOKEN,
                join = if k == 1 {
                    String::new()
                } else {
                    format!("server_url = \"https://{}:6443\"\n", underlay_ip(1))
                },
                data = dir.join("data").display(),
                run = dir.join("run").display(),
                members = members.join(", "),
            ));
            hosts.push(host);
        }
        // A bridge takes a size above 64 KiB only once it has ports that do.
        link_gso(&underlay.path(), BRIDGE, Some(gso));
        for h in &mut hosts {
            h.spawn_server();
        }
        for h in &mut hosts {
            h.wait_ready();
        }
        Lab { hosts, underlay }
    }

    pub fn host(&self, k: usize) -> &NodeHost {
        &self.hosts[k - 1]
    }

    /// A pod on host `k` serving its own name over HTTP on 8080 and echoing on 9000.
    pub async fn run_pod(&self, name: &str, k: usize) -> RunningPod {
        let api: Api<Pod> = Api::namespaced(self.hosts[0].client(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": format!("n{k}"),
                "containers": [
                    {"name": "web", "image": IMAGE, "command": ["sh", "-c",
                        "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]},
                    {"name": "echo", "image": IMAGE, "command": ["nc", "-ll", "-p", "9000", "-e", "cat"]},
                ],
            },
        }))
        .expect("pod");
        api.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let p = api.get(name).await.expect("get pod");
            let st = p.status.clone().unwrap_or_default();
            let running = st.container_statuses.as_ref().is_some_and(|cs| {
                cs.len() == 2
                    && cs
                        .iter()
                        .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            });
            if let (true, Some(ip)) = (running, st.pod_ip.clone()) {
                let uid = p.metadata.uid.clone().expect("uid");
                return RunningPod {
                    name: name.to_string(),
                    ip,
                    netns: PathBuf::from("/run/skiff/netns").join(uid),
                };
            }
            assert!(
                Instant::now() < deadline,
                "pod {name} on n{k} not running: {st:#?}\n{}",
                self.hosts[k - 1].log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Logs of every host, for failure messages.
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("--- n{} ---\n{}", i + 1, h.log()))
            .collect()
    }
}
