//! The `skiff` command line.

mod chart;
mod image;
mod server;
pub(crate) use server::init_logging;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use thiserror::Error;

use crate::config::ConfigError;
use crate::store::datadir::DataDirError;
use crate::store::StoreError;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A small, fast, Kubernetes-compatible container orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane node: a replica of the Raft store, the API server, health and metrics.
    Server(Box<ServerArgs>),
    /// Print the admin's kubeconfig for a server (its `api_addr`, or `--server URL`; the CA and
    /// the admin token come from the server's data dir).
    Kubeconfig(KubeconfigArgs),
    /// Run a node without control plane: the node agent, against a server's API.
    Agent(Box<AgentArgs>),
    /// Manage the node's image store.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// A replicated cluster on this machine, in network namespaces (root).
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// Render and install Helm-format charts as releases.
    #[command(subcommand)]
    Chart(chart::ChartCommand),
    /// Print the version.
    Version,
    /// (internal) The per-container shim started by the node agent.
    #[command(hide = true)]
    Shim(ShimArgs),
}

#[derive(Args)]
pub struct ShimArgs {
    #[arg(long)]
    pub runtime: PathBuf,
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub log: PathBuf,
}

#[derive(Args)]
pub struct AgentArgs {
    /// API server URL, e.g. https://10.0.0.1:6443.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The cluster token (`<data_dir>/token` on the first server); only needed to join.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TOML config file (default: /etc/skiff/config.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Any config key, e.g. `--set node.pod_cidr=10.244.3.0/24` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Args)]
pub struct KubeconfigArgs {
    /// TOML config file of the server (default: /etc/skiff/config.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// API URL to use instead of the config's `api_addr` (e.g. a forwarded port).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Name of the cluster, context and user in the kubeconfig.
    #[arg(long, default_value = "skiff")]
    pub context: String,
}

/// Flags override the config file and `SKIFF_*` environment variables.
#[derive(Args, Default)]
pub struct ServerArgs {
    /// TOML config file (default: /etc/skiff/config.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (all layers applied) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Founding members, comma-separated NAME=HOST:PORT.
    #[arg(long, value_delimiter = ',', value_name = "NAME=HOST:PORT,...")]
    pub initial_cluster: Option<Vec<String>>,
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_listen_addr: Option<String>,
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_advertise_addr: Option<String>,
    #[arg(long, value_name = "HOST:PORT")]
    pub http_listen_addr: Option<String>,
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: Option<String>,
    #[arg(long, value_name = "MS")]
    pub raft_tick_ms: Option<String>,
    #[arg(long, value_name = "TICKS")]
    pub raft_election_ticks: Option<String>,
    #[arg(long, value_name = "TICKS")]
    pub raft_heartbeat_ticks: Option<String>,
    #[arg(long, value_name = "ENTRIES")]
    pub raft_snapshot_interval: Option<String>,
    /// Any other key, e.g. `--set store.watch_history=50000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{context}: {source}")]
    Image {
        context: String,
        source: crate::node::image::ImageError,
    },
    #[error("store replica stopped with exit code {0} (see the log above)")]
    ReplicaExited(i32),
    #[error("node agent: {0}")]
    Node(#[from] crate::node::NodeError),
    #[error("lab: {0}")]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("admission configuration: {0}")]
    Admission(#[from] crate::api::podsecurity::ConfigError),
}

/// The admin's kubeconfig for a server: its API URL (or `server`), the cluster CA and the
/// admin token from the server's data dir.
pub fn admin_kubeconfig(
    cfg: &crate::config::Config,
    server: Option<&str>,
    context: &str,
) -> Result<String, CliError> {
    let files = crate::pki::Files::of(&cfg.data_dir);
    let access = crate::pki::client::Access {
        url: server.map_or_else(|| cfg.local_api_url(), str::to_string),
        ca_pem: crate::pki::read(&files.ca_cert())?,
        identity: crate::pki::client::Identity::Token(
            crate::pki::read(&files.admin_token())?.trim().to_string(),
        ),
    };
    Ok(access.kubeconfig(context))
}

fn kubeconfig(args: &KubeconfigArgs) -> Result<String, CliError> {
    let cfg = crate::config::Config::load(args.config.as_deref(), &[])?;
    admin_kubeconfig(&cfg, args.server.as_deref(), &args.context)
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    // One TLS crypto provider for the process, before any client (kube, oci-client) is built;
    // an error means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Version => {
            println!("skiff {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Server(args) => server::run(*args),
        Command::Agent(args) => server::run_agent(*args),
        Command::Shim(a) => {
            return crate::node::runtime::shim::run(crate::node::runtime::shim::ShimArgs {
                runtime: a.runtime,
                root: a.root,
                id: a.id,
                bundle: a.bundle,
                log: a.log,
            })
        }
        Command::Kubeconfig(args) => kubeconfig(&args).map(|text| print!("{text}")),
        Command::Image(command) => image::run(command),
        Command::Chart(command) => return chart::run(command),
        Command::Lab(command) => crate::lab::run(command).map_err(CliError::from),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("skiff: error: {e}");
            1
        }
    }
}
