//! `skiff lab status` and `skiff lab env`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use super::access::{self, Https};
use super::plan::{self, IMAGE, REGISTRY};
use super::state::{self, LabState};
use super::{netns, LabError};

fn running(dir: &Path) -> Result<LabState, LabError> {
    state::load(dir)?.ok_or_else(|| {
        LabError::Invalid(format!(
            "no lab in {} (start one with `skiff lab up`)",
            dir.display()
        ))
    })
}

/// Plain HTTP/1.0 GET on 127.0.0.1 (Prometheus' own port; every Skiff port is HTTPS, see
/// `access::Https`): (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

pub fn http_ok(port: u16, path: &str) -> bool {
    matches!(get(port, path), Some((200, _)))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub fn status(dir: &Path) -> Result<(), LabError> {
    let st = running(dir)?;
    let plan = &st.plan;
    println!(
        "skiff lab: {} nodes, backend {}, state in {}",
        plan.nodes,
        plan.backend,
        dir.display()
    );
    // As the admin, over TLS with the cluster CA, through the forwarder.
    let https = Https::new(&access::admin(dir, plan)?)?;
    let nodes: Vec<Node> = https
        .get(plan.ports.api, "/api/v1/nodes")
        .filter(|(c, _)| *c == 200)
        .and_then(|(_, b)| serde_json::from_str::<k8s_openapi::List<Node>>(&b).ok())
        .map(|l| l.items)
        .unwrap_or_default();
    println!(
        "{:<5} {:<10} {:<11} {:<8} {:<10} {:<9} {:<6} {:<14} METRICS",
        "NODE", "NAMESPACE", "ADDRESS", "PROCESS", "STORE", "ROLE", "READY", "POD-CIDR"
    );
    for k in plan.indices() {
        let name = plan::node_name(k);
        let alive = st
            .processes
            .iter()
            .any(|(r, pid)| *r == name && netns::alive(*pid as i32));
        let port = plan.metrics_port(k);
        let store = match https.get(port, "/readyz") {
            Some((200, _)) => "ready",
            Some(_) => "not-ready",
            None => "down",
        };
        let role = match https
            .get(port, "/metrics")
            .filter(|(c, _)| *c == 200)
            .and_then(|(_, m)| metric(&m, "skiff_raft_is_leader"))
        {
            Some(v) if v >= 1.0 => "leader",
            Some(_) => "follower",
            None => "-",
        };
        let node = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(&name));
        let ready = node.map_or("-", |n| {
            if crate::controllers::pods::node_ready(n) {
                "True"
            } else {
                "False"
            }
        });
        let cidr = node
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "{name:<5} {:<10} {:<11} {:<8} {store:<10} {role:<9} {ready:<6} {cidr:<14} https://127.0.0.1:{port}/metrics",
            plan.node_ns(k),
            plan::underlay_ip(k),
            if alive { "running" } else { "stopped" },
        );
    }
    println!(
        "API:      {} (context {} in {}; standalone: {}; both with the cluster CA and the admin token)",
        plan.api_url(),
        plan.context(),
        st.kubeconfig.display(),
        state::own_kubeconfig(dir).display()
    );
    println!(
        "token:    {} (the cluster token: servers and agents join with it through {})",
        plan::node_dir(dir, 1).join("data/token").display(),
        plan::join_url()
    );
    println!("registry: {REGISTRY} (as nodes and pods see it), image {IMAGE}");
    if plan.prometheus {
        println!("prometheus: http://127.0.0.1:{}", plan.ports.prometheus);
    }
    Ok(())
}

pub fn env(dir: &Path) -> Result<(), LabError> {
    let st = running(dir)?;
    let nodes: Vec<String> = st.plan.indices().map(|k| st.plan.node_ns(k)).collect();
    print!("{}", env_text(dir, &nodes));
    Ok(())
}

fn env_text(dir: &Path, nodes: &[String]) -> String {
    format!(
        "export KUBECONFIG='{}'\nexport SKIFF_LAB_REGISTRY='{REGISTRY}'\nexport SKIFF_LAB_IMAGE='{IMAGE}'\nexport SKIFF_LAB_NODES='{}'\n",
        state::own_kubeconfig(dir).display(),
        nodes.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_read_by_exact_name() {
        let text =
            "# TYPE skiff_raft_is_leader gauge\nskiff_raft_is_leader_x 5\nskiff_raft_is_leader 1\n";
        assert_eq!(metric(text, "skiff_raft_is_leader"), Some(1.0));
        assert_eq!(metric(text, "skiff_raft_term"), None);
    }

    #[test]
    fn env_is_shell_exports() {
        let text = env_text(
            Path::new("/var/lib/skiff-lab"),
            &["skiff-n1".into(), "skiff-n2".into()],
        );
        assert!(text.contains("export KUBECONFIG='/var/lib/skiff-lab/kubeconfig'\n"));
        assert!(text.contains("export SKIFF_LAB_NODES='skiff-n1 skiff-n2'\n"));
        assert!(text.contains("export SKIFF_LAB_IMAGE='10.90.0.1:5000/busybox:latest'\n"));
    }
}
