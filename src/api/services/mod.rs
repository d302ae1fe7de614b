//! Service allocation: ClusterIPs from the service CIDR and NodePorts from their range, each
//! held as one store key (`/registry/allocations/serviceips/<ip>`,
//! `/registry/allocations/nodeports/<port>`) that is created (must not exist) and deleted in
//! the same transaction as the Service, so concurrent writes on any replica never share a
//! value. Also the `kubernetes` and `kube-dns` Services a cluster starts with.

mod alloc;
mod bootstrap;
pub mod external_ips;
mod plan;
mod validate;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

pub use alloc::{PortRange, ServiceNetwork};
pub use bootstrap::{bootstrap, Bootstrap};
use plan::{
    cluster_ip, needs_cluster_ip, needs_health_check_port, needs_node_port, set_at, Claim, Held,
    Plan, PlanError, Taken,
};
pub use validate::{spec as validate_spec, update as validate_update};

use super::object;
use super::registry::Storage;
use super::status::{ApiError, Subject};
use crate::config::{Config, ConfigError};
use crate::store::{Consistency, Op, StoreClient, StoreError};

/// The service network from `services.*`.
pub fn network(cfg: &Config) -> Result<ServiceNetwork, ConfigError> {
    let (first, last) = cfg.node_port_range()?;
    ServiceNetwork::new(
        cfg.service_cidr()?,
        cfg.dns_service_ip()?,
        PortRange { first, last },
    )
    .map_err(|e| ConfigError::Invalid {
        key: "services".into(),
        reason: e.to_string(),
    })
}

/// Dynamically picked values lost to a concurrent write are picked again this often.
const ATTEMPTS: usize = 16;

/// How the Service itself is written.
pub enum Write {
    Create(String),
    /// The key and the mod revision the update is based on.
    Update(String, u64),
}

/// Writes Services with their allocations.
pub struct Writer<'a> {
    pub store: &'a StoreClient,
    pub net: &'a ServiceNetwork,
    pub dry_run: bool,
}

impl Writer<'_> {
    /// Allocates what `obj` (defaulted and validated) needs, releases what `old` held and
    /// `obj` no longer does, and writes it all in one transaction. Returns the written object
    /// (with its resourceVersion) or, for a dry run, the object as it would be written.
    pub async fn write(
        &self,
        who: &Subject,
        old: Option<&Value>,
        obj: Value,
        target: Write,
    ) -> Result<Value, ApiError> {
        let meta = object::meta(&obj);
        let text = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (ns, name) = (text("namespace"), text("name"));
        let owner = serde_json::to_vec(&json!({"namespace": ns, "name": name, "uid": text("uid")}))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut lost: Vec<String> = Vec::new();
        let mut gone: HashSet<String> = HashSet::new();
        let planned = |new: &mut Value, taken: &Taken| {
            plan::plan(self.net, (&ns, &name), old, new, taken).map_err(|e| plan_error(e, &name))
        };
        for _ in 0..ATTEMPTS {
            // Most updates take nothing new: the pools are read only when something is.
            let mut new = obj.clone();
            let mut plan = planned(&mut new, &Taken::default())?;
            if !plan.claims.is_empty() {
                let mut taken = taken(self.store)
                    .await
                    .map_err(|e| ApiError::from_store(e, who.clone()))?;
                lost.iter().for_each(|k| taken.insert_key(k));
                new = obj.clone();
                plan = planned(&mut new, &taken)?;
            }
            if self.dry_run {
                return Ok(new);
            }
            let ops = ops(&target, object::to_bytes(&new)?, &plan, &owner, &gone);
            match self.store.txn(ops).await {
                Ok(r) => {
                    object::set_rv(&mut new, r.revision);
                    return Ok(new);
                }
                Err(StoreError::AlreadyExists { key }) => {
                    match plan.claims.iter().find(|c| c.key == key) {
                        None => return Err(ApiError::already_exists(who.clone())),
                        Some(Claim {
                            requested: Some(cause),
                            ..
                        }) => return Err(plan_error(PlanError::Invalid(cause.clone()), &name)),
                        Some(_) => lost.push(key),
                    }
                }
                // Released already (a Service stored before allocation keys existed).
                Err(StoreError::NotFound { key }) if plan.releases.contains(&key) => {
                    gone.insert(key);
                }
                Err(e) => return Err(ApiError::from_store(e, who.clone())),
            }
        }
        Err(ApiError::Unavailable(
            "allocating service addresses: too many concurrent allocations, try again".into(),
        ))
    }
}

/// The Service write, the keys it claims and the keys it releases (but those known gone).
fn ops(
    target: &Write,
    value: Vec<u8>,
    plan: &Plan,
    owner: &[u8],
    gone: &HashSet<String>,
) -> Vec<Op> {
    let mut ops = vec![match target {
        Write::Create(key) => Op::Create {
            key: key.clone(),
            value,
        },
        Write::Update(key, rev) => Op::Update {
            key: key.clone(),
            value,
            expected_mod_revision: Some(*rev),
        },
    }];
    ops.extend(plan.claims.iter().map(|c| Op::Create {
        key: c.key.clone(),
        value: owner.to_vec(),
    }));
    let released = plan.releases.iter().filter(|k| !gone.contains(*k));
    ops.extend(released.map(|k| Op::Delete {
        key: k.clone(),
        expected_mod_revision: None,
    }));
    ops
}

fn plan_error(e: PlanError, name: &str) -> ApiError {
    match e {
        PlanError::Invalid(cause) => ApiError::invalid("", "Service", name, vec![cause]),
        PlanError::Full(what) => ApiError::Internal(format!(
            "Internal error occurred: failed to allocate a {what}: range is full"
        )),
    }
}

/// Every allocated value, as this replica has it (the transaction decides, not this read).
async fn taken(store: &StoreClient) -> Result<Taken, StoreError> {
    let mut taken = Taken::default();
    for prefix in [alloc::IP_PREFIX, alloc::PORT_PREFIX] {
        let page = store.list(prefix, None, 0, Consistency::Local).await?;
        page.kvs.iter().for_each(|kv| taken.insert_key(&kv.key));
    }
    Ok(taken)
}

/// Deletes a stored object (at `rev`, when given); a Service's allocations go with it, in the
/// same transaction (`storage` says which kind of storage the key has). Returns the deletion
/// revision.
pub async fn delete(
    store: &StoreClient,
    storage: Storage,
    key: &str,
    rev: Option<u64>,
    stored: &Value,
) -> Result<u64, StoreError> {
    let mut releases = if storage == Storage::ServiceAllocations {
        Held::of(stored).keys()
    } else {
        Vec::new()
    };
    loop {
        let mut ops = vec![Op::Delete {
            key: key.into(),
            expected_mod_revision: rev,
        }];
        ops.extend(releases.iter().map(|k| Op::Delete {
            key: k.clone(),
            expected_mod_revision: None,
        }));
        match store.txn(ops).await {
            Ok(r) => return Ok(r.revision),
            Err(StoreError::NotFound { key: k }) if releases.contains(&k) => {
                releases.retain(|r| *r != k)
            }
            Err(e) => return Err(e),
        }
    }
}

/// The Service update rules that run before defaults and validation (upstream's
/// patchAllocatedValues, normalizeClusterIPs and dropTypeDependentFields): values the client
/// left out are kept, values the new type does not use are dropped if the client did not
/// change them.
pub fn prepare_update(old: &Value, new: &mut Value) {
    if !new.get("spec").is_some_and(Value::is_object) {
        set_at(new, "", "spec", json!({}));
    }
    let get = |v: &Value, k: &str| v.get("spec").and_then(|s| s.get(k)).cloned();
    let (old_ip, old_ips) = (get(old, "clusterIP"), get(old, "clusterIPs"));
    let empty = |v: &Option<Value>| {
        v.as_ref()
            .is_none_or(|v| v.is_null() || v == "" || v == &json!([]))
    };
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() && !empty(&old_ip) {
            set_at(
                new,
                "/spec",
                "clusterIP",
                old_ip.clone().unwrap_or_default(),
            );
        }
        if empty(&get(new, "clusterIPs")) && !empty(&old_ips) && get(new, "clusterIP") == old_ip {
            set_at(
                new,
                "/spec",
                "clusterIPs",
                old_ips.clone().unwrap_or_default(),
            );
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let by_name: Vec<(Value, i64)> = ports(old)
            .iter()
            .map(|p| (p.get("name").cloned().unwrap_or(json!("")), node_port(p)))
            .collect();
        let used: HashSet<i64> = ports(new).iter().map(node_port).collect();
        if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in list.iter_mut().filter_map(Value::as_object_mut) {
                if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                    continue;
                }
                let name = p.get("name").cloned().unwrap_or(json!(""));
                let was = by_name.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                if let Some(v) = was.filter(|v| *v != 0 && !used.contains(v)) {
                    p.insert("nodePort".into(), json!(v));
                }
            }
        }
    }
    let hc = |v: &Value| {
        get(v, "healthCheckNodePort")
            .and_then(|h| h.as_i64())
            .unwrap_or(0)
    };
    if needs_health_check_port(old) && needs_health_check_port(new) && hc(new) == 0 && hc(old) != 0
    {
        set_at(new, "/spec", "healthCheckNodePort", json!(hc(old)));
    }
    let spec_same = |new: &Value, k: &str| get(new, k) == get(old, k);
    let mut drop = Vec::new();
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if spec_same(new, "clusterIPs") && spec_same(new, "clusterIP") {
            drop.extend(["clusterIP", "clusterIPs"]);
        }
        for k in ["ipFamilies", "ipFamilyPolicy"] {
            if spec_same(new, k) {
                drop.push(k);
            }
        }
    }
    if needs_health_check_port(old) && !needs_health_check_port(new) && hc(old) == hc(new) {
        drop.push("healthCheckNodePort");
    }
    let lb = |v: &Value| plan::kind_of(v) == "LoadBalancer";
    if lb(old) && !lb(new) && spec_same(new, "allocateLoadBalancerNodePorts") {
        drop.push("allocateLoadBalancerNodePorts");
    }
    if needs_node_port(old) && !needs_node_port(new) && spec_same(new, "externalTrafficPolicy") {
        drop.push("externalTrafficPolicy");
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        drop.iter().for_each(|k| {
            spec.remove(*k);
        });
    }
    let old_ports: HashSet<i64> = ports(old).iter().map(node_port).collect();
    let new_ports: HashSet<i64> = ports(new).iter().map(node_port).collect();
    if needs_node_port(old) && !needs_node_port(new) && new_ports.is_subset(&old_ports) {
        if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in list.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
}

fn ports(svc: &Value) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn node_port(p: &Value) -> i64 {
    p.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

/// Pause before retrying a bootstrap write the store could not take yet.
const RETRY: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_allocated_values_and_drop_what_the_new_type_does_not_use() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
            "externalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}});
        let mut put = json!({"spec": {"type": "NodePort", "ports": [{"name": "b", "port": 81}, {"name": "a", "port": 80}]}});
        prepare_update(&old, &mut put);
        assert_eq!(put["spec"]["clusterIP"], "10.96.5.5");
        assert_eq!(put["spec"]["clusterIPs"], json!(["10.96.5.5"]));
        assert_eq!(put["spec"]["ports"][0]["nodePort"], 30081);
        assert_eq!(put["spec"]["ports"][1]["nodePort"], 30080);

        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        prepare_update(&old, &mut to_cluster_ip);
        assert!(to_cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
        assert!(to_cluster_ip["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(to_cluster_ip["spec"]["clusterIP"], "10.96.5.5");

        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        prepare_update(&old, &mut to_external);
        for k in ["clusterIP", "clusterIPs", "ipFamilies"] {
            assert!(to_external["spec"].get(k).is_none(), "{k}");
        }
    }
}
