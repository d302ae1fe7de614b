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
    /// Pods per controlling owner (hashed uid): a short list, scanned, not hashed.
    pub owners: Vec<(u64, u32)>,
}

impl Usage {
    pub fn owner_pods(&self, owner: u64) -> u32 {
        self.owners
            .iter()
            .find(|(o, _)| *o == owner)
            .map_or(0, |(_, n)| *n)
    }
}

/// What the scheduler needs to know of one pod.
#[derive(Clone, Debug)]
pub struct PodFacts {
    pub requests: Resources,
    pub host_ports: Vec<(String, i32)>,
    pub owner: Option<u64>,
    /// Node affinities of the pod's bound volumes.
    pub volume_nodes: Vec<k8s_openapi::api::core::v1::NodeSelector>,
}

fn owner_id(uid: &str) -> u64 {
    // FNV-1a: stable and cheap; a collision only merges two owners' spreading counts.
    uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
            owner: crate::controllers::pods::controller_of(&p.metadata).map(|o| owner_id(&o.uid)),
            volume_nodes: Vec::new(),
        }
    }

    pub fn with_owner(mut self, uid: &str) -> Self {
        self.owner = Some(owner_id(uid));
        self
    }
}

struct Placed {
    node: String,
    facts: PodFacts,
}

/// A node and what runs on it.
pub struct Slot {
    pub info: Arc<NodeInfo>,
    pub usage: Usage,
}

/// Nodes live in a vector, so a decision scans them without hashing names.
#[derive(Default)]
pub struct Cache {
    pub slots: Vec<Slot>,
    index: HashMap<String, usize>,
    /// Usage of pods bound to nodes not (yet) known.
    unknown: HashMap<String, Usage>,
    placed: HashMap<String, Placed>,
    pub next_start: usize,
}

impl Cache {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn upsert_node(&mut self, n: &Node) {
        let info = Arc::new(NodeInfo::from_node(n));
        match self.index.get(&info.name) {
            Some(&i) => self.slots[i].info = info,
            None => {
                let usage = self.unknown.remove(&info.name).unwrap_or_default();
                self.index.insert(info.name.clone(), self.slots.len());
                self.slots.push(Slot { info, usage });
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let slot = self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.info.name.clone(), i);
        }
        self.unknown.insert(name.to_string(), slot.usage);
    }

    fn usage_mut(&mut self, node: &str) -> &mut Usage {
        match self.index.get(node) {
            Some(&i) => &mut self.slots[i].usage,
            None => self.unknown.entry(node.to_string()).or_default(),
        }
    }

    fn add(&mut self, uid: &str, node: &str, facts: PodFacts) {
        let u = self.usage_mut(node);
        u.requested += facts.requests;
        u.pods += 1;
        for hp in &facts.host_ports {
            *u.host_ports.entry(hp.clone()).or_default() += 1;
        }
        if let Some(o) = facts.owner {
            match u.owners.iter_mut().find(|(x, _)| *x == o) {
                Some((_, n)) => *n += 1,
                None => u.owners.push((o, 1)),
            }
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
        let u = self.usage_mut(&p.node);
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
        if let Some(o) = p.facts.owner {
            if let Some((_, n)) = u.owners.iter_mut().find(|(x, _)| *x == o) {
                *n = n.saturating_sub(1);
            }
            u.owners.retain(|(_, n)| *n > 0);
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
