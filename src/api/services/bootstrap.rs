//! What every server ensures at start: the `kubernetes` Service in `default` (the first
//! address of the range) with Endpoints and EndpointSlices listing the API servers, the
//! `kube-dns` Service in `kube-system` (the DNS address), and allocation keys that match the
//! stored Services. Idempotent; servers starting together do not undo each other's work.

use crate::api::validate::FieldValidation;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::{json, Value};
use tracing::{info, warn};

use super::alloc::{IP_PREFIX, PORT_PREFIX};
use super::plan::Held;
use super::{ServiceNetwork, Write, Writer, RETRY};
use crate::api::object::{self, subject};
use crate::api::resources::{find, Resource};
use crate::api::status::ApiError;
use crate::config::{Config, ConfigError};
use crate::store::{Consistency, KeyValue, Op, StoreClient, StoreError};

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "skiff-apiserver";
/// Conflicting writes (other servers bootstrapping too) are retried this often.
const CONFLICT_ATTEMPTS: usize = 50;

/// This server as a `kubernetes` endpoint, and the service network.
pub struct Bootstrap {
    pub network: ServiceNetwork,
    /// This member's name (the endpoint's `nodeName`).
    pub member: String,
    /// The initial cluster's member names: endpoints of others are dropped.
    pub members: Vec<String>,
    pub address: Ipv4Addr,
    pub api_port: u16,
}

impl Bootstrap {
    pub fn from_config(cfg: &Config, network: ServiceNetwork) -> Result<Self, ConfigError> {
        let members = cfg.members()?.into_iter().map(|m| m.name).collect();
        Ok(Bootstrap {
            network,
            member: cfg.node_name.clone(),
            members,
            address: advertised_address(cfg),
            api_port: cfg.api_addr.port(),
        })
    }
}

/// `node.address`, else the host of the advertised peer address, else the API address, if
/// one of them is a specific IPv4 address; else 127.0.0.1.
fn advertised_address(cfg: &Config) -> Ipv4Addr {
    let specific = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
        _ => None,
    };
    let peer = cfg.advertised_peer_addr().parse::<SocketAddr>().ok();
    cfg.node
        .address
        .parse()
        .ok()
        .and_then(specific)
        .or_else(|| peer.and_then(|p| specific(p.ip())))
        .or_else(|| specific(cfg.api_addr.ip()))
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

fn resource(group: &str, plural: &str) -> &'static Resource {
    // The table always serves these.
    find(group, "v1", plural).expect("served resource")
}

pub async fn bootstrap(store: StoreClient, b: Bootstrap) {
    let https =
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": b.api_port}]);
    let kubernetes = json!({
        "metadata": {"labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": b.network.kubernetes_ip().to_string(), "ports": https},
    });
    let dns_ports = json!([
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
    ]);
    let kube_dns = json!({
        "metadata": {"labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "KubeDNS"}},
        "spec": {"type": "ClusterIP", "clusterIP": b.network.dns_ip.to_string(), "ports": dns_ports},
    });
    let net = &b.network;
    retrying("service default/kubernetes", || {
        ensure_service(&store, net, "default", "kubernetes", kubernetes.clone())
    })
    .await;
    retrying("service kube-system/kube-dns", || {
        ensure_service(&store, net, "kube-system", "kube-dns", kube_dns.clone())
    })
    .await;
    retrying("kubernetes endpoints", || endpoints(&store, &b)).await;
    retrying("allocation repair", || repair(&store)).await;
}

/// Runs `f` until it succeeds: retryable store errors without limit (the store may not have
/// a leader yet), conflicts with other servers a bounded number of times.
async fn retrying<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut conflicts = 0;
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => {}
            Err(
                StoreError::Conflict { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. },
            ) if conflicts < CONFLICT_ATTEMPTS => conflicts += 1,
            Err(e) => {
                warn!("bootstrap {what}: {e}");
                return;
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Creates the Service with its address unless it exists.
async fn ensure_service(
    store: &StoreClient,
    net: &ServiceNetwork,
    ns: &str,
    name: &str,
    mut obj: Value,
) -> Result<(), StoreError> {
    let res = resource("", "services");
    let key = res.key(Some(ns), name);
    if store.get(&key, Consistency::Linearizable).await?.is_some() {
        return Ok(());
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("kind".into(), json!("Service"));
    }
    object::meta_mut(&mut obj).insert("name".into(), json!(name));
    let prepared = object::prepare_create(res, &mut obj, Some(ns));
    if let Err(e) = prepared {
        warn!("bootstrap service {ns}/{name}: {e}");
        return Ok(());
    }
    if let Err(e) = res
        .strategy
        .admit_create(res, &mut obj, FieldValidation::Ignore)
    {
        warn!("bootstrap service {ns}/{name}: {e}");
        return Ok(());
    }
    let writer = Writer {
        store,
        net,
        dry_run: false,
    };
    match writer
        .write(&subject(res, name), None, obj, Write::Create(key))
        .await
    {
        Ok(_) => {
            info!("created service {ns}/{name}");
            Ok(())
        }
        Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(ApiError::Unavailable(m)) => Err(StoreError::Unavailable(m)),
        Err(e) => {
            warn!("bootstrap service {ns}/{name}: {e}");
            Ok(())
        }
    }
}

/// (port, ip, member) of every API server in the `kubernetes` Endpoints.
fn entries_of(endpoints: &Value) -> BTreeSet<(u16, String, String)> {
    let mut out = BTreeSet::new();
    let subsets = endpoints.get("subsets").and_then(Value::as_array);
    for s in subsets.into_iter().flatten() {
        let port = s
            .pointer("/ports/0/port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let addrs = s.get("addresses").and_then(Value::as_array);
        for a in addrs.into_iter().flatten() {
            let text = |k: &str| a.get(k).and_then(Value::as_str).map(String::from);
            if let (Some(port), Some(ip), Some(node)) = (port, text("ip"), text("nodeName")) {
                out.insert((port, ip, node));
            }
        }
    }
    out
}

fn set(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert(key.into(), value);
    }
}

/// An op that makes the stored object `current` (or a new one, `fresh`) have `fields`.
fn upsert(
    res: &Resource,
    key: String,
    current: Option<&KeyValue>,
    fresh: Value,
    fields: &[(&str, Value)],
) -> Result<Option<Op>, StoreError> {
    let bad = |e: ApiError| StoreError::Invalid(e.to_string());
    let Some(kv) = current else {
        let mut obj = fresh;
        fields.iter().for_each(|(k, v)| set(&mut obj, k, v.clone()));
        object::prepare_create(res, &mut obj, Some("default")).map_err(bad)?;
        let value = object::to_bytes(&obj).map_err(bad)?;
        return Ok(Some(Op::Create { key, value }));
    };
    let mut obj = object::from_kv(kv).map_err(bad)?;
    if fields.iter().all(|(k, v)| obj.get(*k) == Some(v)) {
        return Ok(None);
    }
    fields.iter().for_each(|(k, v)| set(&mut obj, k, v.clone()));
    Ok(Some(Op::Update {
        key,
        value: object::to_bytes(&obj).map_err(bad)?,
        expected_mod_revision: Some(kv.mod_revision),
    }))
}

/// Puts this server into the `kubernetes` Endpoints and EndpointSlices and drops servers
/// that are not members, all in one transaction conditional on what was read. Servers with
/// different API ports get one subset (and one slice, `kubernetes-<port>`) per port.
async fn endpoints(store: &StoreClient, b: &Bootstrap) -> Result<(), StoreError> {
    let (eps_res, slice_res) = (
        resource("", "endpoints"),
        resource("discovery.k8s.io", "endpointslices"),
    );
    let eps_key = eps_res.key(Some("default"), "kubernetes");
    let current = store.get(&eps_key, Consistency::Linearizable).await?;
    let slice_prefix = slice_res.key(Some("default"), "kubernetes");
    let listed = store
        .list(&slice_prefix, None, 0, Consistency::Linearizable)
        .await?;
    let parsed = current
        .as_ref()
        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
    let mut entries: BTreeSet<(u16, String, String)> = parsed
        .as_ref()
        .map(entries_of)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, _, m)| *m != b.member && b.members.contains(m))
        .collect();
    entries.insert((b.api_port, b.address.to_string(), b.member.clone()));
    let mut groups: BTreeMap<u16, Vec<(String, String)>> = BTreeMap::new();
    for (port, ip, member) in entries {
        groups.entry(port).or_default().push((ip, member));
    }
    let port_of = |p: u16| json!([{"name": "https", "port": p, "protocol": "TCP"}]);
    let subsets: Vec<Value> = groups
        .iter()
        .map(|(p, addrs)| {
            let addrs: Vec<Value> = addrs
                .iter()
                .map(|(ip, m)| json!({"ip": ip, "nodeName": m}))
                .collect();
            json!({"addresses": addrs, "ports": port_of(*p)})
        })
        .collect();
    let fresh = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes",
        "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}});
    let mut ops = Vec::new();
    let fields = [("subsets", json!(subsets))];
    ops.extend(upsert(eps_res, eps_key, current.as_ref(), fresh, &fields)?);

    let ours = |kv: &KeyValue| {
        let v: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let label = |k: &str| {
            v.pointer(&format!("/metadata/labels/{}", k.replace('/', "~1")))
                .cloned()
        };
        label(SERVICE_NAME) == Some(json!("kubernetes"))
            && label(MANAGED_BY) == Some(json!(MANAGER))
    };
    let mut existing: HashMap<String, KeyValue> = listed
        .kvs
        .into_iter()
        .filter(|kv| ours(kv))
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    for (port, addrs) in &groups {
        let name = if groups.len() == 1 {
            "kubernetes".to_string()
        } else {
            format!("kubernetes-{port}")
        };
        let key = slice_res.key(Some("default"), &name);
        let eps: Vec<Value> = addrs
            .iter()
            .map(|(ip, m)| {
                json!({"addresses": [ip], "nodeName": m,
                "conditions": {"ready": true, "serving": true, "terminating": false}})
            })
            .collect();
        let fresh = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {SERVICE_NAME: "kubernetes", MANAGED_BY: MANAGER}},
            "addressType": "IPv4"});
        let fields = [("endpoints", json!(eps)), ("ports", port_of(*port))];
        let current = existing.remove(&key);
        ops.extend(upsert(slice_res, key, current.as_ref(), fresh, &fields)?);
    }
    ops.extend(existing.into_values().map(|kv| Op::Delete {
        key: kv.key,
        expected_mod_revision: Some(kv.mod_revision),
    }));
    if !ops.is_empty() {
        store.txn(ops).await?;
        info!(address = %b.address, port = b.api_port, "registered in the kubernetes service's endpoints");
    }
    Ok(())
}

/// Makes the allocation keys match the stored Services: creates missing ones (Services
/// stored before allocation existed) and deletes keys no Service holds. The keys are read
/// before the Services and deleted only at the revision read: a key that is held again was
/// recreated by a transaction that also wrote its Service.
async fn repair(store: &StoreClient) -> Result<(), StoreError> {
    let mut present: HashMap<String, u64> = HashMap::new();
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        let page = store
            .list(prefix, None, 0, Consistency::Linearizable)
            .await?;
        present.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)));
    }
    let services = resource("", "services").scope_prefix(None);
    let page = store
        .list(&services, None, 0, Consistency::Linearizable)
        .await?;
    let mut wanted: HashMap<String, Vec<u8>> = HashMap::new();
    for kv in page.kvs {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let m = object::meta(&svc);
        let owner =
            json!({"namespace": m.get("namespace"), "name": m.get("name"), "uid": m.get("uid")});
        for key in Held::of(&svc).keys() {
            wanted
                .entry(key)
                .or_insert_with(|| owner.to_string().into_bytes());
        }
    }
    for (key, owner) in &wanted {
        if !present.contains_key(key) {
            match store.create(key, owner.clone()).await {
                Ok(_) => info!(%key, "allocation recorded for a stored service"),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    for (key, rev) in &present {
        if !wanted.contains_key(key) {
            match store.delete(key, Some(*rev)).await {
                Ok(_) => info!(%key, "released an allocation no service holds"),
                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_entries_need_a_port_an_ip_and_a_member() {
        let eps = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1"}, {"ip": "10.0.0.9"}], "ports": [{"port": 6443}]},
            {"addresses": [{"ip": "10.0.0.2", "nodeName": "n2"}]},
        ]});
        let got: Vec<_> = entries_of(&eps).into_iter().collect();
        assert_eq!(got, vec![(6443, "10.0.0.1".to_string(), "n1".to_string())]);
    }
}
