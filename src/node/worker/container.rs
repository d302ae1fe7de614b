//! One container of a pod on this node: what it runs as (bundle from the Pod and the image),
//! where it is in its life (running, exited, waiting to restart), and the restart back-off.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::probes::ProbeState;
use super::security;
use super::volumes::Prepared;
use crate::k8s::quantity::parse as parse_quantity;
use crate::node::image::ImageRecord;
use crate::node::runtime::bundle::{BindMount, ContainerSpec};
use crate::node::runtime::ExitRecord;
use crate::node::sandbox::EtcFiles;
use crate::node::NodeError;

/// Restart back-off as upstream: 10 s doubling to 5 min; reset after 10 min of running.
pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct Terminated {
    pub exit: ExitRecord,
    pub started_at: String,
    pub id: String,
}

#[derive(Default)]
pub struct ContainerState {
    /// The current (or next) attempt: the restartCount.
    pub attempt: u32,
    /// runc id of the current attempt, once created.
    pub id: Option<String>,
    pub pid: Option<i32>,
    pub started_at: Option<String>,
    pub started_instant: Option<Instant>,
    /// Set when the current attempt has exited.
    pub exit: Option<ExitRecord>,
    /// The attempt before (`lastState`).
    pub last: Option<Terminated>,
    /// Why it is not running: (reason, message).
    pub waiting: Option<(String, String)>,
    pub backoff: Option<Duration>,
    pub not_before: Option<Instant>,
    pub image: Option<ImageRecord>,
    pub probes: ProbeState,
}

impl ContainerState {
    pub fn running(&self) -> bool {
        self.pid.is_some() && self.exit.is_none()
    }

    pub fn succeeded(&self) -> bool {
        self.exit.as_ref().is_some_and(|e| e.exit_code == 0)
    }

    /// The next restart is allowed after the back-off; returns the delay applied.
    pub fn schedule_restart(&mut self, now: Instant) -> Duration {
        let ran_long = self
            .started_instant
            .is_some_and(|s| now.duration_since(s) >= BACKOFF_RESET);
        let delay = match self.backoff {
            // The first restart is immediate, as upstream (the back-off starts afterwards).
            None => Duration::ZERO,
            Some(_) if ran_long => Duration::ZERO,
            Some(d) if d.is_zero() => BACKOFF_START,
            Some(d) => (d * 2).min(BACKOFF_MAX),
        };
        self.backoff = Some(if ran_long { Duration::ZERO } else { delay });
        self.not_before = Some(now + delay);
        delay
    }
}

/// runc container id: unique on the node, stable per attempt.
pub fn runc_id(uid: &str, name: &str, attempt: u32) -> String {
    format!("{uid}_{name}_{attempt}")
}

fn quantity(map: Option<&BTreeMap<String, Quantity>>, res: &str, scale: f64) -> Option<i64> {
    map?.get(res).and_then(|q| parse_quantity(&q.0, scale))
}

fn limit(c: &Container, res: &str, scale: f64) -> Option<i64> {
    quantity(c.resources.as_ref()?.limits.as_ref(), res, scale)
}

/// The request, or the limit when only that is set (upstream defaulting).
fn request(c: &Container, res: &str, scale: f64) -> Option<i64> {
    quantity(c.resources.as_ref()?.requests.as_ref(), res, scale).or_else(|| limit(c, res, scale))
}

pub struct SpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageRecord,
    pub env: Vec<String>,
    pub args: Vec<String>,
    pub volumes: &'a BTreeMap<String, Prepared>,
    /// Where this container's subPath mounts are made (`<pod>/volume-subpaths/<container>`).
    pub sub_paths: PathBuf,
    pub etc: &'a EtcFiles,
    pub netns: PathBuf,
    pub hostname: String,
    pub cgroups_path: String,
    /// The mounted root filesystem (the image's account files are read there).
    pub rootfs: PathBuf,
    /// The node's pids limit per container; 0: none.
    pub pids_limit: i64,
}

/// The container's bundle description.
pub fn container_spec(i: SpecInput<'_>) -> Result<ContainerSpec, NodeError> {
    let c = i.container;
    let mut mounts = vec![
        BindMount {
            destination: "/etc/hosts".into(),
            source: i.etc.hosts.clone(),
            read_only: false,
        },
        BindMount {
            destination: "/etc/hostname".into(),
            source: i.etc.hostname.clone(),
            read_only: false,
        },
        BindMount {
            destination: "/etc/resolv.conf".into(),
            source: i.etc.resolv.clone(),
            read_only: false,
        },
    ];
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(dir) = i.volumes.get(&m.name) else {
            return Err(NodeError::Config(format!(
                "volume {:?} of container {:?} is not available on this node",
                m.name, c.name
            )));
        };
        let mut source = dir.dir.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let target = i.sub_paths.join(j.to_string());
            super::mounts::bind_sub_path(&dir.dir, sub, &target)?;
            source = target;
        }
        mounts.push(BindMount {
            destination: m.mount_path.clone(),
            source,
            read_only: dir.read_only || m.read_only == Some(true),
        });
    }
    let image_user = i.image.config.user.as_str();
    security::verify_run_as_non_root(i.pod, c, image_user)?;
    let who = security::identity(&i.rootfs, i.pod, c, image_user)?;
    let hardening = security::hardening(i.pod, c)?;
    if i.args.is_empty() {
        return Err(NodeError::Config(format!(
            "no command specified for container {:?} and the image has none",
            c.name
        )));
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| i.image.config.working_dir.clone());
    Ok(ContainerSpec {
        hostname: i.hostname,
        args: i.args,
        env: i.env,
        cwd,
        uid: who.uid,
        gid: who.gid,
        additional_gids: who.additional_gids,
        capabilities: hardening.capabilities,
        no_new_privileges: hardening.no_new_privileges,
        privileged: hardening.privileged,
        readonly_rootfs: hardening.readonly_rootfs,
        seccomp: hardening.seccomp,
        pids_limit: (i.pids_limit > 0).then_some(i.pids_limit),
        netns: i.netns,
        mounts,
        cgroups_path: i.cgroups_path,
        memory_limit: limit(c, "memory", 1.0),
        cpu_limit_millis: limit(c, "cpu", 1000.0),
        cpu_request_millis: request(c, "cpu", 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_to_five_minutes() {
        let mut s = ContainerState::default();
        let now = Instant::now();
        let delays: Vec<u64> = (0..8).map(|_| s.schedule_restart(now).as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }
}
