//! `ClusterDns`: watches Services, EndpointSlices and Pods into reflector stores, rebuilds the
//! zone snapshot when they change, and owns the hickory server that answers from it.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures_util::{future, Stream, StreamExt};
use hickory_server::Server;
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{store::Writer, Store};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::records::Snapshot;
use super::server::{QueryHandler, Shared};

/// Changes arriving within this window are folded into one rebuild.
const REBUILD_DELAY: Duration = Duration::from_millis(20);

/// Which watch a change came from (index into `ClusterDns::listed`).
const SERVICES: usize = 0;
const SLICES: usize = 1;
const PODS: usize = 2;

pub struct ClusterDns {
    domain: String,
    ttl: u32,
    shared: Arc<Shared>,
    /// Dropping it stops the listeners.
    server: Server<QueryHandler>,
    local_addr: SocketAddr,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    /// Taken when the watches start.
    watches: Option<Watches>,
    /// Which watches have completed their first list.
    listed: [bool; 3],
    rebuild_pending: bool,
    serial: u32,
}

/// What the watches are started with.
struct Watches {
    client: Client,
    services: Writer<Service>,
    slices: Writer<EndpointSlice>,
    pods: Writer<Pod>,
}

/// A watched object changed (`listed`: a full list completed).
#[derive(Message)]
#[rtype(result = "()")]
struct Changed {
    kind: usize,
    listed: bool,
}

/// The address the server answers on (UDP and TCP).
#[derive(Message)]
#[rtype(result = "SocketAddr")]
pub struct LocalAddr;

/// Whether every watch has listed once (before that, cluster names answer SERVFAIL).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Synced;

impl ClusterDns {
    pub(super) fn new(
        client: Client,
        domain: String,
        ttl: u32,
        shared: Arc<Shared>,
        server: Server<QueryHandler>,
        local_addr: SocketAddr,
    ) -> Self {
        let (services, ws) = reflector::store();
        let (slices, we) = reflector::store();
        let (pods, wp) = reflector::store();
        ClusterDns {
            domain,
            ttl,
            shared,
            server,
            local_addr,
            services,
            slices,
            pods,
            watches: Some(Watches {
                client,
                services: ws,
                slices: we,
                pods: wp,
            }),
            listed: [false; 3],
            rebuild_pending: false,
            serial: 0,
        }
    }

    fn rebuild(&mut self) {
        // The SOA serial follows the clock (as CoreDNS's), and moves on every rebuild.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Serial numbers wrap by definition (RFC 1982), so truncation is fine.
        self.serial = (now as u32).max(self.serial.wrapping_add(1));
        let snap = Snapshot::build(
            &self.domain,
            self.ttl,
            self.serial,
            &self.services.state(),
            &self.slices.state(),
            &self.pods.state(),
        );
        let synced = self.listed.iter().all(|l| *l);
        self.shared.publish(snap, synced);
    }
}

/// Watches every object of `K`, into `writer`'s store, as `Changed` notes for the changes
/// that can alter records (`relevant`).
fn watch<K>(
    client: &Client,
    writer: Writer<K>,
    kind: usize,
    slim: fn(&mut K),
    relevant: fn(&K) -> bool,
) -> impl Stream<Item = Changed>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let api: Api<K> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .filter_map(move |ev| {
            future::ready(match ev {
                Ok(watcher::Event::InitDone) => Some(Changed { kind, listed: true }),
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) if relevant(&o) => {
                    Some(Changed {
                        kind,
                        listed: false,
                    })
                }
                // A list in progress lands in the store at once, on InitDone.
                Ok(_) => None,
                Err(e) => {
                    debug!(kind, error = %e, "cluster DNS watch error (retrying)");
                    None
                }
            })
        })
}

/// Only what DNS reads is kept of objects (annotations and managed fields can be large).
fn slim_meta(meta: &mut ObjectMeta) {
    meta.annotations = None;
    meta.managed_fields = None;
}

fn any<K>(_: &K) -> bool {
    true
}

/// Pods answer in DNS only with a hostname and a subdomain (both immutable).
fn named_pod(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let set = |v: Option<&String>| v.is_some_and(|v| !v.is_empty());
    set(spec.and_then(|s| s.hostname.as_ref())) && set(spec.and_then(|s| s.subdomain.as_ref()))
}

fn slim_service(svc: &mut Service) {
    slim_meta(&mut svc.metadata);
}

fn slim_slice(slice: &mut EndpointSlice) {
    slim_meta(&mut slice.metadata);
}

/// A pod's address tells which namespace's search path a question comes with (autopath).
fn addressed_or_named(pod: &Pod) -> bool {
    named_pod(pod) || pod.status.as_ref().is_some_and(|s| s.pod_ip.is_some())
}

/// Pods are the biggest and most numerous objects; DNS needs the name, hostname, subdomain,
/// phase and IPs of named ones, and only the name and IPs of the others.
fn slim_pod(pod: &mut Pod) {
    if !named_pod(pod) {
        let meta = &pod.metadata;
        *pod = Pod {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectMeta::default()
            },
            status: pod.status.as_ref().map(|s| PodStatus {
                pod_ip: s.pod_ip.clone(),
                pod_ips: s.pod_ips.clone(),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        return;
    }
    let meta = &pod.metadata;
    let slim = Pod {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            deletion_timestamp: meta.deletion_timestamp.clone(),
            ..ObjectMeta::default()
        },
        spec: pod.spec.as_ref().map(|s| PodSpec {
            hostname: s.hostname.clone(),
            subdomain: s.subdomain.clone(),
            ..PodSpec::default()
        }),
        status: pod.status.as_ref().map(|s| PodStatus {
            phase: s.phase.clone(),
            pod_ip: s.pod_ip.clone(),
            pod_ips: s.pod_ips.clone(),
            ..PodStatus::default()
        }),
    };
    *pod = slim;
}

impl Actor for ClusterDns {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(w) = self.watches.take() {
            ctx.add_stream(watch(&w.client, w.services, SERVICES, slim_service, any));
            ctx.add_stream(watch(&w.client, w.slices, SLICES, slim_slice, any));
            ctx.add_stream(watch(&w.client, w.pods, PODS, slim_pod, addressed_or_named));
        }
        info!(addr = %self.local_addr, domain = %self.domain, "cluster DNS serving");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.server.shutdown_token().cancel();
        info!(addr = %self.local_addr, "cluster DNS stopped");
    }
}

impl StreamHandler<Changed> for ClusterDns {
    fn handle(&mut self, change: Changed, ctx: &mut Context<Self>) {
        if change.listed {
            self.listed[change.kind] = true;
        }
        if !self.rebuild_pending {
            self.rebuild_pending = true;
            ctx.run_later(REBUILD_DELAY, |act, _| {
                act.rebuild_pending = false;
                act.rebuild();
            });
        }
    }

    /// A watch with backoff does not end; if one does, the others keep serving (the default
    /// would stop the actor).
    fn finished(&mut self, _: &mut Context<Self>) {
        warn!("a cluster DNS watch ended; its records are no longer updated");
    }
}

impl Handler<LocalAddr> for ClusterDns {
    type Result = MessageResult<LocalAddr>;

    fn handle(&mut self, _: LocalAddr, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.local_addr)
    }
}

impl Handler<Synced> for ClusterDns {
    type Result = bool;

    fn handle(&mut self, _: Synced, _: &mut Context<Self>) -> bool {
        self.listed.iter().all(|l| *l)
    }
}
