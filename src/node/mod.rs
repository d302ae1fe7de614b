//! The node agent: the `Kubelet` actor, which registers the Node, heartbeats its Lease and
//! runs the pods bound to it (one worker task per pod), and the container runtime it drives.

pub mod agent;
pub mod config;
pub mod confined;
pub mod image;
pub mod layout;
pub mod metrics;
pub mod registration;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod services;
pub mod storage;
pub mod worker;

use std::sync::Arc;

use kube::Client;
use thiserror::Error;

pub use agent::Kubelet;
pub use config::NodeConfig;
pub use layout::{ContainerRecord, NodeDirs, PodRecord};

use image::{ImageError, ImageRecord, ImageStore};
use metrics::KubeletMetrics;
use runtime::{Runtime, RuntimeError};
use sandbox::{SandboxError, Sandboxes};

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A configuration problem of the pod (missing ConfigMap key, no command, ...).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Pod(String),
    /// The container cannot be configured as asked (runAsNonRoot on a root image, ...): the
    /// container waits with upstream's `CreateContainerConfigError`.
    #[error("{0}")]
    ContainerConfig(String),
    #[error("decoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What every pod worker shares.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub host_ip: String,
    pub dirs: NodeDirs,
    pub runtime: Runtime,
    pub sandboxes: Sandboxes,
    pub images: Arc<ImageStore>,
    /// One pull at a time: two pods of one image pull it once.
    pulls: tokio::sync::Mutex<()>,
    pub metrics: KubeletMetrics,
    /// What pods' resolv.conf is made from.
    pub dns: crate::dns::resolv::PodDns,
    /// Most processes (threads included) one container may have; 0: no limit.
    pub pids_limit: i64,
}

/// imagePullPolicy default, as upstream: Always for `:latest` or no tag, else IfNotPresent.
fn default_policy(reference: &str) -> &'static str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

impl NodeContext {
    /// The image of a container by pull policy, or (reason, message) for its waiting state.
    pub async fn ensure_image(
        &self,
        reference: &str,
        policy: Option<&str>,
    ) -> Result<ImageRecord, (String, String)> {
        if reference.is_empty() {
            return Err((
                "InvalidImageName".into(),
                "the container has no image".into(),
            ));
        }
        let policy = policy.unwrap_or_else(|| default_policy(reference));
        let local = self.images.get(reference);
        match (policy, local) {
            ("Never", Some(img)) | ("IfNotPresent", Some(img)) => return Ok(img),
            ("Never", None) => {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!(
                        "Container image {reference:?} is not present with pull policy of Never"
                    ),
                ))
            }
            _ => {}
        }
        let _one = self.pulls.lock().await;
        if policy == "IfNotPresent" {
            if let Some(img) = self.images.get(reference) {
                return Ok(img);
            }
        }
        ImageStore::pull(&self.images, reference)
            .await
            .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))
    }
}

/// The node's actors; they run while this is held.
pub struct NodeHandle {
    pub kubelet: actix::Addr<Kubelet>,
    pub overlay: Option<actix::Addr<overlay::OverlayAgent>>,
    pub proxy: Option<actix::Addr<crate::proxy::ServiceProxy>>,
    pub ingress: Option<actix::Addr<crate::ingress::IngressController>>,
    pub dns: Option<actix::Addr<crate::dns::ClusterDns>>,
    pub storage: actix::Addr<storage::LocalPath>,
}

/// What the kubelet port serves HTTPS with: the node's certificate (system:node:NAME, with
/// the node's addresses), and the cluster CA its callers' client certificates must chain to.
#[derive(Clone)]
pub struct NodeTls {
    pub ca_pem: String,
    pub node: crate::pki::KeyedCert,
}

/// Builds the agent from the configuration and starts the `Kubelet` actor and, unless
/// disabled, the `OverlayAgent` (inside a running actix system). `api`: the API server the
/// agents talk to, with the node's credentials; `tls`: the kubelet port's certificate.
pub async fn start(
    cfg: &crate::config::Config,
    api: &crate::pki::client::Access,
    tls: &NodeTls,
    registry: &prometheus::Registry,
) -> Result<NodeHandle, NodeError> {
    use actix::Actor;
    let node = &cfg.node;
    let client = api
        .kube_client()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let dirs = NodeDirs {
        state: cfg.node_state_dir(),
        run: node.run_dir.join(&cfg.node_name),
    };
    // The state directory may be outside the data directory; it holds pod volumes.
    crate::store::datadir::private_dir(&dirs.state)?;
    std::fs::create_dir_all(dirs.pods())?;
    let runtime = Runtime::new(node.runtime.clone(), dirs.runc_root())?;
    let images = Arc::new(ImageStore::open(
        &dirs.images(),
        node.insecure_registries.clone(),
    )?);
    // The overlay's underlay comes first: it decides the pods' link sizes and the node address.
    let (mut address, mut pod_link, mut overlay_agent) =
        (node.address.clone(), sandbox::PodLink::default(), None);
    if cfg.overlay.enabled {
        let o = &cfg.overlay;
        let cluster = cfg
            .cluster_cidr()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let underlay = overlay::Underlay::detect(o, &node.address, &[&node.bridge])
            .await
            .map_err(|e| NodeError::Config(e.to_string()))?;
        pod_link = sandbox::PodLink {
            mtu: underlay.pod_mtu(o.backend),
            gso_max: underlay.pod_gso_max(o.backend),
        };
        if address.is_empty() {
            address = underlay.ip.to_string();
        }
        let metrics = overlay::metrics::OverlayMetrics::register(registry)
            .map_err(|e| NodeError::Config(format!("metrics: {e}")))?;
        overlay_agent = Some(overlay::OverlayAgent::new(
            client.clone(),
            cfg.node_name.clone(),
            o.clone(),
            cluster,
            underlay,
            metrics,
        ));
    }
    if address.is_empty() {
        address = registration::first_address(&node.bridge);
    }
    let runtime_version = std::process::Command::new(&node.runtime)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = text.lines().next()?.split_whitespace().nth(2)?.to_string();
            Some(format!("runc://{v}"))
        })
        .ok_or_else(|| {
            NodeError::Config(format!(
                "OCI runtime {} does not run (install runc or set node.runtime)",
                node.runtime.display()
            ))
        })?;
    let metrics = KubeletMetrics::register(registry, &cfg.node_name)
        .map_err(|e| NodeError::Config(format!("metrics: {e}")))?;
    let host = registration::HostInfo {
        name: cfg.node_name.clone(),
        address: address.clone(),
        port: node.listen_addr.port(),
        metrics_port: cfg.http_listen_addr.port(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_kib: registration::memory_kib(),
        max_pods: node.max_pods,
        runtime_version,
    };
    // Logs and exec for the API server's pods/log and pods/exec.
    let server = server::serve(
        node.listen_addr,
        dirs.clone(),
        node.runtime.clone(),
        server::tls_config(&tls.ca_pem, &tls.node)?,
    )?;
    actix::spawn(server);
    let ctx = Arc::new(NodeContext {
        client,
        node_name: cfg.node_name.clone(),
        host_ip: address,
        sandboxes: Sandboxes::new(node.bridge.clone(), dirs.clone(), pod_link),
        dirs,
        runtime,
        images,
        pulls: tokio::sync::Mutex::new(()),
        metrics,
        pids_limit: node.pids_limit,
        dns: crate::dns::resolv::PodDns {
            // ClusterFirst pods use the cluster DNS only when this node runs it.
            cluster: cfg.dns.enabled.then(|| crate::dns::resolv::ClusterDnsRef {
                server: cfg.services.dns_service_ip.clone(),
                domain: cfg.services.cluster_domain.clone(),
            }),
            node_servers: node.dns_servers.clone(),
        },
    });
    let node_ip: std::net::Ipv4Addr = ctx.host_ip.parse().map_err(|_| {
        NodeError::Config(format!(
            "node address {:?} is not an IPv4 address",
            ctx.host_ip
        ))
    })?;
    let services = services::ServiceContext {
        client: ctx.client.clone(),
        node_name: cfg.node_name.clone(),
        node_ip,
        cfg,
        registry,
    };
    let proxy = cfg
        .proxy
        .enabled
        .then(|| crate::proxy::start(&services))
        .transpose()
        .map_err(|e| NodeError::Config(format!("service proxy: {e}")))?;
    let dns = if cfg.dns.enabled {
        Some(
            crate::dns::start(&services)
                .await
                .map_err(|e| NodeError::Config(format!("cluster DNS: {e}")))?,
        )
    } else {
        None
    };
    let ingress = if cfg.ingress.enabled {
        Some(
            crate::ingress::start(&services)
                .await
                .map_err(|e| NodeError::Config(format!("ingress: {e}")))?,
        )
    } else {
        None
    };
    let storage = storage::LocalPath::new(
        ctx.client.clone(),
        cfg.node_name.clone(),
        ctx.dirs.state.join("storage"),
    )
    .start();
    Ok(NodeHandle {
        storage,
        kubelet: Kubelet::new(ctx, host, node.clone()).start(),
        overlay: overlay_agent.map(Actor::start),
        proxy,
        ingress,
        dns,
    })
}
