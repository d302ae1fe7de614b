//! `skiff lab down`: stops every lab process, removes containers, mounts, namespaces (with
//! their links), the lab directory and the kubeconfig context. Safe to run twice and after a
//! failed `up`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::plan::{self, MAX_NODES};
use super::{kubeconfig, netns, state, LabError};

/// Removes the lab in `dir`, or when `dir` has no lab state, the namespaces of the lab `name`
/// (what a failed `up` may have left).
pub fn run(dir: &Path, name: &str) -> Result<(), LabError> {
    let st = state::load(dir)?;
    let name = st.as_ref().map_or(name, |s| s.plan.name.as_str());
    plan::check_name(name)?;
    let underlay = plan::underlay_ns(name);
    let node_namespaces: Vec<String> = (1..=MAX_NODES)
        .map(|k| plan::node_ns(name, k))
        .filter(|n| netns::exists(n))
        .collect();
    if st.is_none() && node_namespaces.is_empty() && !netns::exists(&underlay) {
        println!("skiff lab: no lab in {}; nothing to remove", dir.display());
        return Ok(());
    }
    // Servers first, so no node agent restarts a container being removed.
    let mut pids: Vec<i32> = st
        .iter()
        .flat_map(|s| s.processes.iter())
        .map(|(_, pid)| *pid as i32)
        .filter(|&p| {
            ["skiff", "prometheus", "docker-registry"]
                .iter()
                .any(|e| netns::runs(p, e))
        })
        .collect();
    for ns in node_namespaces
        .iter()
        .map(String::as_str)
        .chain([underlay.as_str()])
    {
        pids.extend(netns::pids(ns));
    }
    netns::stop(&pids, Duration::from_secs(5));
    if st.is_some() {
        remove_containers(dir);
        // Shims and anything else a container left in the node namespaces.
        let rest: Vec<i32> = node_namespaces
            .iter()
            .flat_map(|n| netns::pids(n))
            .collect();
        netns::stop(&rest, Duration::from_secs(2));
        unmount(dir);
    }
    for ns in node_namespaces
        .iter()
        .map(String::as_str)
        .chain([underlay.as_str()])
    {
        netns::delete(ns)?;
    }
    if let Some(st) = st {
        kubeconfig::remove(&st.kubeconfig, &st.plan.context(), st.kubeconfig_created)?;
        let left = mounts_under(dir);
        if !left.is_empty() {
            return Err(LabError::Invalid(format!(
                "still mounted, {} kept: {}",
                dir.display(),
                left.join(", ")
            )));
        }
        std::fs::remove_dir_all(dir)?;
    }
    println!("skiff lab: removed");
    Ok(())
}

/// runc state roots of every node: `DIR/nK/run/<node>/runc`.
fn runc_roots(dir: &Path) -> Vec<PathBuf> {
    (1..=MAX_NODES)
        .filter_map(|k| std::fs::read_dir(plan::node_dir(dir, k).join("run")).ok())
        .flat_map(|d| d.flatten().map(|e| e.path().join("runc")))
        .filter(|p| p.is_dir())
        .collect()
}

fn remove_containers(dir: &Path) {
    for root in runc_roots(dir) {
        crate::node::runtime::delete_all(&root);
    }
}

/// Mount points of /proc/self/mountinfo below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.len()));
    out.dedup();
    out
}

/// Pod network namespaces (`/run/skiff/netns/<pod uid>`) of the lab's pods, then every mount
/// under the lab directory (container root filesystems, volumes).
fn unmount(dir: &Path) {
    let uids: Vec<String> = (1..=MAX_NODES)
        .filter_map(|k| std::fs::read_dir(plan::node_dir(dir, k).join("data/node/pods")).ok())
        .flat_map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()))
        .collect();
    for u in &uids {
        let p = format!("/run/skiff/netns/{u}");
        let _ = Command::new("umount").arg("-l").arg(&p).output();
        let _ = std::fs::remove_file(&p);
    }
    for m in mounts_under(dir) {
        let _ = Command::new("umount").arg("-l").arg(&m).output();
    }
}
