//! What one Service write takes from and gives back to the pools, decided from the stored
//! object, the new one and the values already taken: upstream's allocation rules for
//! ClusterIPs, NodePorts (shared by ports with the same number) and the health check port.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::alloc::{ip_key, port_key, AllocError, ServiceNetwork, IP_PREFIX, PORT_PREFIX};
use crate::api::status::Cause;

pub fn kind_of(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Every type but ExternalName has a clusterIP (`None` counts).
pub fn needs_cluster_ip(svc: &Value) -> bool {
    kind_of(svc) != "ExternalName"
}

pub fn needs_node_port(svc: &Value) -> bool {
    matches!(kind_of(svc), "NodePort" | "LoadBalancer")
}

pub fn needs_health_check_port(svc: &Value) -> bool {
    kind_of(svc) == "LoadBalancer"
        && svc
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

pub fn cluster_ip(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Sets `key` in the object at `path`; nothing if there is no object there.
pub fn set_at(v: &mut Value, path: &str, key: &str, value: Value) {
    if let Some(m) = v.pointer_mut(path).and_then(Value::as_object_mut) {
        m.insert(key.into(), value);
    }
}

fn node_port(p: &Value) -> i64 {
    p.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

fn health_check_port(svc: &Value) -> i64 {
    svc.pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Values taken in the pools (by anyone).
#[derive(Debug, Default, Clone)]
pub struct Taken {
    pub ips: HashSet<Ipv4Addr>,
    pub ports: HashSet<u16>,
}

impl Taken {
    /// Records the value an allocation key stands for.
    pub fn insert_key(&mut self, key: &str) {
        if let Some(ip) = key.strip_prefix(IP_PREFIX).and_then(|s| s.parse().ok()) {
            self.ips.insert(ip);
        } else if let Some(p) = key.strip_prefix(PORT_PREFIX).and_then(|s| s.parse().ok()) {
            self.ports.insert(p);
        }
    }
}

/// The values a stored Service holds, so the keys it owns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    pub ips: BTreeSet<Ipv4Addr>,
    pub ports: BTreeSet<u16>,
}

impl Held {
    pub fn of(svc: &Value) -> Self {
        let mut h = Held::default();
        if needs_cluster_ip(svc) {
            let ips = svc.pointer("/spec/clusterIPs").and_then(Value::as_array);
            let listed = ips.into_iter().flatten().filter_map(Value::as_str);
            for ip in listed.chain([cluster_ip(svc)]) {
                if let Ok(ip) = ip.parse() {
                    h.ips.insert(ip);
                }
            }
        }
        let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
        let numbers = ports.into_iter().flatten().map(node_port);
        for n in numbers.chain([health_check_port(svc)]) {
            if let Ok(p) = u16::try_from(n) {
                if p > 0 {
                    h.ports.insert(p);
                }
            }
        }
        h
    }

    pub fn keys(&self) -> Vec<String> {
        let ips = self.ips.iter().map(|ip| ip_key(*ip));
        ips.chain(self.ports.iter().map(|p| port_key(*p))).collect()
    }
}

/// A key this write creates; for a value the user asked for, what to answer if it is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub key: String,
    pub requested: Option<Cause>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub claims: Vec<Claim>,
    pub releases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// 422 on the Service.
    Invalid(Cause),
    /// A pool is exhausted: `serviceIP` or `nodePort`.
    Full(&'static str),
}

/// Go's rendering of a `[]string`, as upstream's messages show `clusterIPs`.
pub fn go_strings(v: &[&str]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", items.join(", "))
}

struct Planner<'a> {
    net: &'a ServiceNetwork,
    owner: (&'a str, &'a str),
    old: Held,
    taken: &'a Taken,
    now: Held,
    plan: Plan,
}

impl Planner<'_> {
    fn ip(&mut self, svc: &mut Value) -> Result<(), PlanError> {
        let requested = cluster_ip(svc).to_string();
        if requested == "None" {
            if svc.pointer("/spec/clusterIPs").is_none_or(Value::is_null) {
                set_at(svc, "/spec", "clusterIPs", json!(["None"]));
            }
            return Ok(());
        }
        if requested.is_empty() {
            let mut taken = self.taken.ips.clone();
            taken.extend(self.old.ips.iter().copied());
            let ip = self
                .net
                .pick_ip(&taken)
                .map_err(|_| PlanError::Full("serviceIP"))?;
            set_at(svc, "/spec", "clusterIP", json!(ip.to_string()));
            set_at(svc, "/spec", "clusterIPs", json!([ip.to_string()]));
            self.claim(ip_key(ip), None);
            self.now.ips.insert(ip);
            return Ok(());
        }
        let cause = |e: AllocError| {
            Cause::invalid(
                "spec.clusterIPs",
                go_strings(&[&requested]),
                format!("failed to allocate IP {requested}: {e}"),
            )
        };
        if let Some(ip) = requested
            .parse()
            .ok()
            .filter(|ip| self.old.ips.contains(ip))
        {
            self.now.ips.insert(ip);
            return Ok(());
        }
        let ip = self
            .net
            .check_ip(&requested, self.owner)
            .map_err(|e| PlanError::Invalid(cause(e)))?;
        if self.taken.ips.contains(&ip) {
            return Err(PlanError::Invalid(cause(AllocError::IpAllocated)));
        }
        self.claim(ip_key(ip), Some(cause(AllocError::IpAllocated)));
        self.now.ips.insert(ip);
        Ok(())
    }

    fn claim(&mut self, key: String, requested: Option<Cause>) {
        self.plan.claims.push(Claim { key, requested });
    }

    /// Takes a port the user asked for (or keeps it, if this Service has it already).
    fn requested_port(
        &mut self,
        n: i64,
        field: &str,
        why: impl Fn(&AllocError) -> String,
    ) -> Result<u16, PlanError> {
        let cause = |e: AllocError| Cause::invalid(field, n, why(&e));
        if let Some(p) = u16::try_from(n)
            .ok()
            .filter(|p| self.old.ports.contains(p) || self.now.ports.contains(p))
        {
            self.now.ports.insert(p);
            return Ok(p);
        }
        let p = self
            .net
            .check_port(n)
            .map_err(|e| PlanError::Invalid(cause(e)))?;
        if self.taken.ports.contains(&p) {
            return Err(PlanError::Invalid(cause(AllocError::PortAllocated)));
        }
        self.claim(port_key(p), Some(cause(AllocError::PortAllocated)));
        self.now.ports.insert(p);
        Ok(p)
    }

    fn next_port(&mut self) -> Result<u16, PlanError> {
        let mut taken = self.taken.ports.clone();
        taken.extend(self.old.ports.iter().chain(&self.now.ports));
        let p = self
            .net
            .pick_port(&taken)
            .map_err(|_| PlanError::Full("nodePort"))?;
        self.claim(port_key(p), None);
        self.now.ports.insert(p);
        Ok(p)
    }

    /// upstream's initNodePorts/updateNodePorts: ports with the same number share one
    /// NodePort; a value given on a later port with that number is used for all of them.
    fn node_ports(&mut self, svc: &mut Value) -> Result<(), PlanError> {
        let allocate = kind_of(svc) == "NodePort"
            || svc.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false));
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut by_port: HashMap<i64, u16> = HashMap::new();
        let message = |e: &AllocError| e.to_string();
        for (i, p) in ports.iter().enumerate() {
            let number = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let given = node_port(p);
            if given == 0 && !allocate {
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            let value = match by_port.get(&number) {
                Some(&shared) if given == 0 || given == i64::from(shared) => shared,
                Some(_) => self.requested_port(given, &field, message)?,
                None => {
                    let later = ports[i..]
                        .iter()
                        .filter(|q| q.get("port").and_then(Value::as_i64) == Some(number))
                        .map(node_port)
                        .find(|n| *n != 0);
                    let v = match later {
                        Some(n) => self.requested_port(n, &field, message)?,
                        None => self.next_port()?,
                    };
                    by_port.insert(number, v);
                    v
                }
            };
            set_at(svc, &format!("/spec/ports/{i}"), "nodePort", json!(value));
        }
        Ok(())
    }

    fn health_check_port(&mut self, svc: &mut Value) -> Result<(), PlanError> {
        let given = health_check_port(svc);
        let port = if given != 0 {
            self.requested_port(given, "spec.healthCheckNodePort", |e| {
                format!("failed to allocate requested HealthCheck NodePort {given}: {e}")
            })?
        } else {
            self.next_port()?
        };
        set_at(svc, "/spec", "healthCheckNodePort", json!(port));
        Ok(())
    }
}

/// Fills in allocated values on `new` (defaulted and validated) and says which keys to create
/// and delete. `old` is the stored Service for an update; `owner` its (namespace, name).
pub fn plan(
    net: &ServiceNetwork,
    owner: (&str, &str),
    old: Option<&Value>,
    new: &mut Value,
    taken: &Taken,
) -> Result<Plan, PlanError> {
    if let Some(old) = old {
        let was = cluster_ip(old);
        let is = cluster_ip(new);
        if needs_cluster_ip(old) && needs_cluster_ip(new) && !was.is_empty() && is != was {
            return Err(PlanError::Invalid(Cause::invalid(
                "spec.clusterIP",
                format!("{is:?}"),
                "field is immutable",
            )));
        }
    }
    let old_held = old.map(Held::of).unwrap_or_default();
    let mut p = Planner {
        net,
        owner,
        old: old_held.clone(),
        taken,
        now: Held::default(),
        plan: Plan::default(),
    };
    if !new.get("spec").is_some_and(Value::is_object) {
        set_at(new, "", "spec", json!({}));
    }
    if needs_cluster_ip(new) {
        p.ip(new)?;
    }
    if needs_node_port(new) {
        p.node_ports(new)?;
    }
    if needs_health_check_port(new) {
        p.health_check_port(new)?;
    }
    let released = Held {
        ips: old_held.ips.difference(&p.now.ips).copied().collect(),
        ports: old_held.ports.difference(&p.now.ports).copied().collect(),
    };
    p.plan.releases = released.keys();
    Ok(p.plan)
}

#[cfg(test)]
mod tests {
    use super::super::alloc::PortRange;
    use super::*;

    fn net() -> ServiceNetwork {
        let ports = PortRange {
            first: 30000,
            last: 32767,
        };
        ServiceNetwork::new(
            "10.96.0.0/16".parse().expect("cidr"),
            "10.96.0.10".parse().expect("ip"),
            ports,
        )
        .expect("network")
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": spec})
    }

    const OWNER: (&str, &str) = ("ns", "s");

    fn message(e: PlanError) -> String {
        match e {
            PlanError::Invalid(c) => format!("{}: {}", c.field, c.message),
            PlanError::Full(what) => format!("full: {what}"),
        }
    }

    #[test]
    fn cluster_ips_are_allocated_requested_or_refused() {
        let taken = Taken::default();
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        let p = plan(&net(), OWNER, None, &mut s, &taken).expect("plan");
        let ip = cluster_ip(&s).to_string();
        assert_eq!(s["spec"]["clusterIPs"], json!([ip]));
        assert_eq!(p.claims.len(), 1);
        assert_eq!(p.claims[0].key, format!("{IP_PREFIX}{ip}"));
        assert!(p.claims[0].requested.is_none());

        let mut asked = svc(json!({"clusterIP": "10.96.3.3", "ports": [{"port": 80}]}));
        let p = plan(&net(), OWNER, None, &mut asked, &taken).expect("plan");
        assert!(p.claims[0].requested.is_some());

        let mut t = Taken::default();
        t.insert_key(&ip_key("10.96.3.3".parse().expect("ip")));
        let e = plan(&net(), OWNER, None, &mut asked.clone(), &t).expect_err("taken");
        assert_eq!(
            message(e),
            r#"spec.clusterIPs: Invalid value: []string{"10.96.3.3"}: failed to allocate IP 10.96.3.3: provided IP is already allocated"#
        );
        let mut out = svc(json!({"clusterIP": "10.97.0.5", "ports": [{"port": 80}]}));
        let e = plan(&net(), OWNER, None, &mut out, &taken).expect_err("range");
        assert!(message(e).ends_with("the provided IP (10.97.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16"));

        let mut headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let p = plan(&net(), OWNER, None, &mut headless, &taken).expect("plan");
        assert!(p.claims.is_empty());
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut ext = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        let p = plan(&net(), OWNER, None, &mut ext, &taken).expect("plan");
        assert_eq!(p, Plan::default());
        assert!(ext["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_are_shared_by_port_number_and_requested_ones_kept() {
        let taken = Taken::default();
        let mut s = svc(json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
            {"name": "web", "port": 80},
        ]}));
        let p = plan(&net(), OWNER, None, &mut s, &taken).expect("plan");
        let ports: Vec<i64> = (0..3).map(|i| node_port(&s["spec"]["ports"][i])).collect();
        assert_eq!(&ports[..2], &[30053, 30053]);
        assert!((30000..=32767).contains(&ports[2]) && ports[2] != 30053);
        assert_eq!(p.claims.len(), 3, "{p:?}");

        let mut t = Taken::default();
        t.ports.insert(30080);
        let mut dup = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        let e = plan(&net(), OWNER, None, &mut dup, &t).expect_err("taken");
        assert_eq!(
            message(e),
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        let mut out = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}));
        let e = plan(&net(), OWNER, None, &mut out, &taken).expect_err("range");
        assert!(message(e).ends_with(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ));
    }

    #[test]
    fn load_balancers_get_health_check_ports_and_may_skip_node_ports() {
        let taken = Taken::default();
        let mut lb = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
        );
        let p = plan(&net(), OWNER, None, &mut lb, &taken).expect("plan");
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none());
        assert!(health_check_port(&lb) >= 30000);
        assert_eq!(p.claims.len(), 2); // the IP and the health check port
    }

    #[test]
    fn updates_keep_what_is_held_and_release_what_is_dropped() {
        let taken = Taken::default();
        let old = svc(
            json!({"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
            "ports": [{"port": 80, "nodePort": 30080}]}),
        );
        let mut same = old.clone();
        let p = plan(&net(), OWNER, Some(&old), &mut same, &taken).expect("plan");
        assert_eq!(p, Plan::default());

        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        to_cluster_ip["spec"]["ports"] = json!([{"port": 80}]);
        let p = plan(&net(), OWNER, Some(&old), &mut to_cluster_ip, &taken).expect("plan");
        assert!(p.claims.is_empty());
        assert_eq!(p.releases, vec![port_key(30080)]);

        let mut moved = old.clone();
        moved["spec"]["clusterIP"] = json!("10.96.5.6");
        let e = plan(&net(), OWNER, Some(&old), &mut moved, &taken).expect_err("immutable");
        assert_eq!(
            message(e),
            r#"spec.clusterIP: Invalid value: "10.96.5.6": field is immutable"#
        );

        let mut external = old.clone();
        external["spec"] = json!({"type": "ExternalName", "externalName": "example.com"});
        let p = plan(&net(), OWNER, Some(&old), &mut external, &taken).expect("plan");
        assert_eq!(
            p.releases,
            vec![ip_key("10.96.5.5".parse().expect("ip")), port_key(30080)]
        );
        let mut back = svc(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        let p = plan(&net(), OWNER, Some(&external), &mut back, &taken).expect("plan");
        assert_eq!(p.claims.len(), 1);
    }

    #[test]
    fn exhausted_pools_say_which() {
        let mut taken = Taken::default();
        taken.ports.extend(30000..=32767);
        let mut s = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let e = plan(&net(), OWNER, None, &mut s, &taken).expect_err("full");
        assert_eq!(e, PlanError::Full("nodePort"));
    }
}
