//! `skiff lab`: an N-node replicated cluster on one machine, inside network namespaces.
//!
//! The lab runs the same `skiff server` a real host runs, one per node namespace
//! (`skiff-n1..N`; `NAME-n1..N` with `--name`), all on one underlay bridge in the namespace
//! `skiff-ul` (`NAME-ul`); a detached forwarder (`skiff lab forward`) makes the API and
//! metrics reachable on 127.0.0.1 in the root namespace. Nothing of the lab is addressed or
//! routed in the root namespace.
//!
//! The lab is secure as any cluster is: one random cluster token per lab (`DIR/token`),
//! node 1 creates the cluster CA and the others join with the token; every port is HTTPS,
//! and the kubeconfig `up` writes holds the CA and the admin token.

mod access;
mod down;
mod forward;
mod image;
mod join;
mod kubeconfig;
mod netns;
mod plan;
mod prometheus;
mod state;
mod status;
mod up;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use thiserror::Error;

pub use plan::Plan;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("{0}")]
    Invalid(String),
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("lab state {path}: {reason}")]
    State { path: String, reason: String },
    #[error("{0}")]
    NotReady(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Create the namespaces, start one `skiff server` per node, the registry and the
    /// forwarder, write the kubeconfig and wait until every node is Ready.
    Up(UpArgs),
    /// Add a worker node (a `skiff agent`, no control plane) to the running lab.
    Join(JoinArgs),
    /// Stop everything and remove the namespaces, links, mounts, files and kubeconfig context.
    Down(DownArgs),
    /// Nodes, leader and endpoints of the running lab.
    Status(DirArgs),
    /// Shell exports for scripts: `eval "$(skiff lab env)"`.
    Env(DirArgs),
    /// (internal) The forwarder from 127.0.0.1 into the node namespaces.
    #[command(hide = true)]
    Forward(DirArgs),
}

#[derive(Args, Clone)]
pub struct DirArgs {
    /// Where the lab keeps its state, data and logs.
    #[arg(long, env = "SKIFF_LAB_DIR", default_value = "/var/lib/skiff-lab")]
    pub dir: PathBuf,
}

/// The lab's name: prefix of its namespaces (`NAME-ul`, `NAME-nK`) and kubeconfig context
/// (`NAME-lab`). Labs with different names (and ports) run side by side.
#[derive(Args, Clone)]
pub struct NameArgs {
    #[arg(long, env = "SKIFF_LAB_NAME", default_value = plan::DEFAULT_NAME)]
    pub name: String,
}

#[derive(Args, Clone)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Used when DIR has no lab state: the namespaces of that name are removed.
    #[command(flatten)]
    pub name: NameArgs,
}

#[derive(Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub name: NameArgs,
    /// Number of nodes; every node is a control-plane member.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Overlay backend of every node: vxlan, host-gw or vxlan-user.
    #[arg(long, default_value = "vxlan")]
    pub backend: String,
    /// Kubeconfig to merge the `NAME-lab` context into (default: $KUBECONFIG's first file,
    /// else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Also run Prometheus in node 1's namespace (HTTP API on 127.0.0.1:PROMETHEUS_PORT).
    #[arg(long)]
    pub prometheus: bool,
    /// The API on 127.0.0.1 in the root namespace.
    #[arg(long, default_value_t = plan::API_PORT)]
    pub api_port: u16,
    /// Node 1's metrics on 127.0.0.1; node K's on this + K - 1.
    #[arg(long, default_value_t = plan::NODE_METRICS_PORT)]
    pub metrics_port: u16,
    /// Prometheus on 127.0.0.1 (with --prometheus).
    #[arg(long, default_value_t = plan::PROMETHEUS_PORT)]
    pub prometheus_port: u16,
    /// How long to wait for every node to be Ready.
    #[arg(long, default_value_t = 180)]
    pub timeout_seconds: u64,
}

#[derive(Args, Clone)]
pub struct JoinArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// How long to wait for the new node to be Ready.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
}

pub fn run(cmd: LabCommand) -> Result<(), LabError> {
    match cmd {
        LabCommand::Up(a) => up::run(&a),
        LabCommand::Join(a) => join::run(
            &a.dir.dir,
            std::time::Duration::from_secs(a.timeout_seconds),
        ),
        LabCommand::Down(a) => down::run(&a.dir.dir, &a.name.name),
        LabCommand::Status(a) => status::status(&a.dir),
        LabCommand::Env(a) => status::env(&a.dir),
        LabCommand::Forward(a) => forward::run(&a.dir),
    }
}
