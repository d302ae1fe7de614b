//! `skiff lab join`: one more node in the running lab, as a worker joins a real cluster: its
//! own namespace on the underlay and a `skiff agent` (no control plane) against node 1's API
//! (`--server https://10.90.0.11:6443`), with the lab's cluster token in its config; it gets
//! the CA and its node certificate by joining.

use std::path::Path;
use std::time::Duration;

use super::plan::{self, MAX_NODES};
use super::state::{self, LabState};
use super::{access, netns, up, LabError};

pub fn run(dir: &Path, timeout: Duration) -> Result<(), LabError> {
    let mut st = state::load(dir)?.ok_or_else(|| {
        LabError::Invalid(format!(
            "no lab in {}: run `skiff lab up` first",
            dir.display()
        ))
    })?;
    let k = (st.plan.nodes + 1..=MAX_NODES)
        .find(|k| !netns::exists(&st.plan.node_ns(*k)))
        .ok_or_else(|| {
            LabError::Invalid(format!("the lab has its maximum of {MAX_NODES} nodes"))
        })?;
    let api = plan::join_url();
    if let Err(e) = join(dir, &mut st, k, &api, timeout) {
        // Nothing half-made stays: the agent (if it runs) and the namespace go.
        let role = plan::node_name(k);
        let pids: Vec<i32> = st
            .processes
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, p)| *p as i32)
            .chain(netns::pids(&st.plan.node_ns(k)))
            .collect();
        netns::stop(&pids, Duration::from_secs(2));
        st.processes.retain(|(r, _)| *r != role);
        state::save(dir, &st)?;
        netns::delete(&st.plan.node_ns(k))?;
        return Err(e);
    }
    println!(
        "skiff lab: node {} joined (agent at {}, against {api})",
        plan::node_name(k),
        plan::underlay_ip(k)
    );
    Ok(())
}

fn join(
    dir: &Path,
    st: &mut LabState,
    k: usize,
    api: &str,
    timeout: Duration,
) -> Result<(), LabError> {
    let admin = access::admin(dir, &st.plan)?;
    up::add_node_namespace(&st.plan, k)?;
    up::start_node(dir, st, k, Some(api))?;
    up::wait_ready(&admin, &[plan::node_name(k)], timeout).map_err(|e| {
        LabError::NotReady(format!(
            "{e}; see {}",
            plan::node_dir(dir, k).join("server.log").display()
        ))
    })
}
