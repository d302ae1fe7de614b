//! `skiff lab up`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use crate::pki::client::Access;

use super::netns::{self, ip};
use super::plan::{self, LocalPorts, Plan, BRIDGE, IMAGE, REGISTRY_CIDR};
use super::state::{self, LabState};
use super::{access, down, image, kubeconfig, prometheus, LabError, UpArgs};

const TOOLS: [&str; 7] = [
    "ip",
    "nsenter",
    "runc",
    "docker-registry",
    "skopeo",
    "busybox",
    "python3",
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn preflight(plan: &Plan, dir: &Path) -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::Invalid(
            "skiff lab needs root (it creates network namespaces)".into(),
        ));
    }
    let mut missing: Vec<&str> = TOOLS.into_iter().filter(|t| !on_path(t)).collect();
    if plan.prometheus && !on_path("prometheus") {
        missing.push("prometheus");
    }
    if !missing.is_empty() {
        return Err(LabError::Invalid(format!(
            "missing tools: {} (scripts/install-deps.sh installs them)",
            missing.join(", ")
        )));
    }
    let names = std::iter::once(plan.underlay_ns()).chain(plan.indices().map(|k| plan.node_ns(k)));
    if let Some(ns) = names.into_iter().find(|n| netns::exists(n)) {
        return Err(LabError::Invalid(format!(
            "network namespace {ns} exists but {} has no lab: remove it first (`skiff lab down --dir DIR` of the lab that made it), or give this lab another --name and ports",
            dir.display()
        )));
    }
    for port in plan.local_ports() {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| LabError::Invalid(format!("127.0.0.1:{port} is not free: {e}")))?;
    }
    Ok(())
}

pub fn run(args: &UpArgs) -> Result<(), LabError> {
    let dir = args.dir.dir.as_path();
    let ports = LocalPorts {
        api: args.api_port,
        metrics: args.metrics_port,
        prometheus: args.prometheus_port,
    };
    let plan =
        Plan::new(args.nodes, &args.backend, args.prometheus)?.named(&args.name.name, ports)?;
    if let Some(st) = state::load(dir)? {
        let dead: Vec<&String> = st
            .processes
            .iter()
            .filter(|(_, pid)| !netns::alive(*pid as i32))
            .map(|(role, _)| role)
            .collect();
        if dead.is_empty() {
            println!(
                "skiff lab: already running ({} nodes, backend {}, state in {}); nothing changed",
                st.plan.nodes,
                st.plan.backend,
                dir.display()
            );
            return Ok(());
        }
        return Err(LabError::Invalid(format!(
            "the lab in {} is partly stopped ({} not running): run `skiff lab down` first",
            dir.display(),
            dead.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    preflight(&plan, dir)?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(kubeconfig::default_path);
    let started = Instant::now();
    std::fs::create_dir_all(dir)?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let mut st = LabState {
        plan: plan.clone(),
        kubeconfig,
        kubeconfig_created: false,
        processes: Vec::new(),
    };
    // From here on a failure removes what was made, so nothing is left half-built.
    let access = match build(dir, &mut st, timeout) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff lab: up failed ({e}); removing what was started");
            let _ = down::run(dir, &plan.name);
            return Err(e);
        }
    };
    println!(
        "skiff lab: {} servers started, waiting for the nodes",
        plan.nodes
    );
    let names: Vec<String> = plan.indices().map(plan::node_name).collect();
    wait_ready(&access, &names, timeout).map_err(|e| {
        LabError::NotReady(format!(
            "{e}; logs in {}/n*/server.log; `skiff lab down` removes the lab",
            dir.display()
        ))
    })?;
    if plan.prometheus {
        // It scrapes with a ServiceAccount token of its own, which needs the API up.
        let pid = prometheus::start(dir, &plan, &access).map_err(|e| {
            LabError::NotReady(format!(
                "Prometheus: {e} (see {}/prometheus/prometheus.log); `skiff lab down` removes the lab",
                dir.display()
            ))
        })?;
        record(dir, &mut st, "prometheus", pid)?;
        prometheus::wait_ready(&plan, Duration::from_secs(30)).map_err(|e| {
            LabError::NotReady(format!(
                "{e} (see {}/prometheus/prometheus.log)",
                dir.display()
            ))
        })?;
    }
    println!(
        "skiff lab: {} nodes Ready in {:.1} s\n\n\
         kubectl:    kubectl --context {} get nodes -o wide   (context merged into {})\n\
         scripts:    eval \"$(skiff lab env)\"; kubectl get pods -A\n\
         image:      {IMAGE}\n\
         metrics:    {}   (HTTPS, a token allowed to get /metrics)\n\
         join:       skiff lab join   (cluster token: {})\n\
         status:     skiff lab status\n\
         remove:     skiff lab down",
        plan.nodes,
        started.elapsed().as_secs_f64(),
        plan.context(),
        st.kubeconfig.display(),
        plan.indices()
            .map(|k| format!("https://127.0.0.1:{}/metrics", plan.metrics_port(k)))
            .collect::<Vec<_>>()
            .join(" "),
        plan::node_dir(dir, 1).join("data/token").display(),
    );
    if plan.prometheus {
        println!(
            "prometheus: http://127.0.0.1:{}/ (targets from /skiff/v1/prometheus-sd, scraped with its own token)",
            plan.ports.prometheus
        );
    }
    Ok(())
}

/// The lab's cluster token: made once per lab, kept in `DIR/token` (0600).
fn ensure_token(dir: &Path) -> Result<(), LabError> {
    let path = plan::token_path(dir);
    if !path.exists() {
        let token = crate::pki::ClusterToken::generate()?;
        crate::pki::write_private(&path, &token.secret)?;
    }
    Ok(())
}

/// Everything but Prometheus: namespaces, registry, servers (all at once: node 1 creates the
/// cluster CA, the others join through it), the forwarder and the kubeconfigs. Returns the
/// admin's access once node 1 has written the CA and the admin token.
fn build(dir: &Path, st: &mut LabState, timeout: Duration) -> Result<Access, LabError> {
    let plan = st.plan.clone();
    // State first: `down` finds whatever exists from the first namespace on.
    state::save(dir, st)?;
    ensure_token(dir)?;
    let ul = plan.underlay_ns();
    netns::add(&ul)?;
    ip(&["-n", &ul, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", &ul, "addr", "add", REGISTRY_CIDR, "dev", BRIDGE])?;
    ip(&["-n", &ul, "link", "set", BRIDGE, "up"])?;
    for k in plan.indices() {
        add_node_namespace(&plan, k)?;
    }
    let pid = image::start_registry(dir, &ul)?;
    record(dir, st, "registry", pid)?;
    image::preload(dir, &ul)?;
    for k in plan.indices() {
        start_node(dir, st, k, None)?;
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(&exe);
    cmd.args(["lab", "forward", "--dir"]).arg(dir);
    let pid = netns::spawn(None, cmd, &dir.join("forward.log"))?;
    record(dir, st, "forwarder", pid)?;
    let access = access::wait_admin(dir, st, timeout)?;
    crate::pki::write_private(
        &state::own_kubeconfig(dir),
        &access.kubeconfig(&plan.context()),
    )?;
    st.kubeconfig_created = kubeconfig::merge(&st.kubeconfig, &plan.context(), &access)?;
    state::save(dir, st)?;
    Ok(access)
}

/// Namespace `NAME-nK` with `eth0` at 10.90.0.(10+K)/24, its peer on the underlay bridge.
pub(super) fn add_node_namespace(plan: &Plan, k: usize) -> Result<(), LabError> {
    let ns = plan.node_ns(k);
    let ul = plan.underlay_ns();
    let port = plan::node_name(k);
    netns::add(&ns)?;
    ip(&[
        "-n", &ul, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    ip(&["-n", &ul, "link", "set", &port, "master", BRIDGE, "up"])?;
    let cidr = format!("{}/24", plan::underlay_ip(k));
    ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    Ok(())
}

/// Node K's `skiff server`, or with `agent_of` (an API URL) its `skiff agent`, in its
/// namespace, logging to `DIR/nK/server.log`. Both take the cluster token from their config
/// (`security.token_file`).
pub(super) fn start_node(
    dir: &Path,
    st: &mut LabState,
    k: usize,
    agent_of: Option<&str>,
) -> Result<(), LabError> {
    let ndir = plan::node_dir(dir, k);
    std::fs::create_dir_all(&ndir)?;
    let cfg = ndir.join("config.toml");
    std::fs::write(&cfg, st.plan.node_config(k, dir))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    match agent_of {
        None => cmd.arg("server"),
        Some(api) => cmd.args(["agent", "--server", api]),
    };
    cmd.arg("--config").arg(&cfg);
    let pid = netns::spawn(Some(&st.plan.node_ns(k)), cmd, &ndir.join("server.log"))?;
    record(dir, st, &plan::node_name(k), pid)
}

fn record(dir: &Path, st: &mut LabState, role: &str, pid: u32) -> Result<(), LabError> {
    st.processes.push((role.to_string(), pid));
    state::save(dir, st)
}

/// Polls the API through the forwarder (as the admin, over TLS) until the nodes `names` are
/// Ready, printing progress.
pub(super) fn wait_ready(
    access: &Access,
    names: &[String],
    timeout: Duration,
) -> Result<(), LabError> {
    let want = names.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = access.kube_client()?;
        let nodes: kube::Api<Node> = kube::Api::all(client);
        let start = Instant::now();
        let mut last = None;
        let mut error = String::new();
        loop {
            let ready = match nodes.list(&Default::default()).await {
                Ok(list) => {
                    error.clear();
                    list.items
                        .iter()
                        .filter(|n| n.metadata.name.as_ref().is_some_and(|m| names.contains(m)))
                        .filter(|n| crate::controllers::pods::node_ready(n))
                        .count()
                }
                Err(e) => {
                    error = format!(" (last API error: {e})");
                    0
                }
            };
            if last != Some(ready) {
                println!(
                    "  {ready}/{want} nodes Ready ({:.0} s)",
                    start.elapsed().as_secs_f64()
                );
                last = Some(ready);
            }
            if ready >= want {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(LabError::NotReady(format!(
                    "only {ready}/{want} nodes Ready after {} s{error}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
