//! The scheduler's view of the cluster: per node its allocatable resources, labels, taints
//! and readiness, and what the pods bound (or assumed bound) to it use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use super::resources::{self, Resources};

pub struct NodeInfo {
    pub name: String,
    pub allocatable: Resources,
    pub max_pods: i64,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
}

impl NodeInfo {
    pub fn from_node(n: &Node) -> Self {
        let status = n.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let get = |k: &str, scale: f64| {
            alloc
                .and_then(|a| a.get(k))
                .and_then(|q| resources::parse(&q.0, scale))
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        NodeInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            allocatable: Resources {
                milli_cpu: get("cpu", 1000.0).unwrap_or(0),
                memory: get("memory", 1.0).unwrap_or(0),
            },
            max_pods: get("pods", 1.0).unwrap_or(110),
            labels: n.metadata.labels.clone().unwrap_or_default(),
            taints: n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            unschedulable: n
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            ready,
        }
    }
}

/// What the pods on one node use.
#[derive(Default, Clone)]
pub struct Usage {
    pub requested: Resources,
    pub pods: i64,
    pub host_ports: HashMap<(String, i32), u32>,
    /// Pods per controlling owner (uid), for spreading.
    pub owners: HashMap<String, u32>,
}

/// What the scheduler needs to know of one pod.
#[derive(Clone, Debug)]
pub struct PodFacts {
    pub requests: Resources,
    pub host_ports: Vec<(String, i32)>,
    pub owner: Option<String>,
}

impl PodFacts {
    pub fn of(p: &Pod) -> Self {
        let mut host_ports = Vec::new();
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            for port in c.ports.iter().flatten() {
                if let Some(hp) = port.host_port.filter(|hp| *hp > 0) {
                    host_ports.push((port.protocol.clone().unwrap_or_else(|| "TCP".into()), hp));
                }
            }
        }
        PodFacts {
            requests: resources::pod_requests(p),
            host_ports,
            owner: crate::controllers::pods::controller_of(&p.metadata).map(|o| o.uid.clone()),
        }
    }
}

struct Placed {
    node: String,
    facts: PodFacts,
}

#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, Arc<NodeInfo>>,
    /// Node names in a stable order, for round-robin sampling.
    pub order: Vec<String>,
    pub usage: HashMap<String, Usage>,
    placed: HashMap<String, Placed>,
    pub next_start: usize,
}

impl Cache {
    pub fn upsert_node(&mut self, n: &Node) {
        let info = NodeInfo::from_node(n);
        if !self.nodes.contains_key(&info.name) {
            self.order.push(info.name.clone());
        }
        self.nodes.insert(info.name.clone(), Arc::new(info));
    }

    pub fn remove_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.order.retain(|n| n != name);
        }
    }

    fn add(&mut self, uid: &str, node: &str, facts: PodFacts) {
        let u = self.usage.entry(node.to_string()).or_default();
        u.requested += facts.requests;
        u.pods += 1;
        for hp in &facts.host_ports {
            *u.host_ports.entry(hp.clone()).or_default() += 1;
        }
        if let Some(o) = &facts.owner {
            *u.owners.entry(o.clone()).or_default() += 1;
        }
        self.placed.insert(
            uid.to_string(),
            Placed {
                node: node.to_string(),
                facts,
            },
        );
    }

    pub fn remove(&mut self, uid: &str) {
        let Some(p) = self.placed.remove(uid) else {
            return;
        };
        if let Some(u) = self.usage.get_mut(&p.node) {
            u.requested -= p.facts.requests;
            u.pods -= 1;
            for hp in &p.facts.host_ports {
                if let Some(c) = u.host_ports.get_mut(hp) {
                    *c -= 1;
                    if *c == 0 {
                        u.host_ports.remove(hp);
                    }
                }
            }
            if let Some(o) = &p.facts.owner {
                if let Some(c) = u.owners.get_mut(o) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }

    /// Counts the pod on its node if it is bound and not finished.
    pub fn pod_changed(&mut self, p: &Pod, deleted: bool) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if deleted || finished || node.is_empty() {
            self.remove(&uid);
            return;
        }
        if self.placed.get(&uid).is_some_and(|pl| pl.node == node) {
            return;
        }
        self.remove(&uid);
        self.add(&uid, &node, PodFacts::of(p));
    }

    /// Counts a pod on the node it is being bound to, before the API confirms it.
    pub fn assume(&mut self, uid: &str, node: &str, facts: PodFacts) {
        self.remove(uid);
        self.add(uid, node, facts);
    }

    pub fn is_placed(&self, uid: &str) -> bool {
        self.placed.contains_key(uid)
    }
}
