//! The pod worker's passes: adopt what a previous agent left, set up the sandbox and volumes,
//! run init containers in order, start and restart app containers with back-off, run probes,
//! and tear everything down on deletion.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use tracing::{info, warn};

use super::container::{self, ContainerState, SpecInput, Terminated};
use super::probes::Verdict;
use super::{env, status, volumes, PodWorker};
use crate::node::image::ImageRecord;
use crate::node::runtime::{self, bundle, rootfs};
use crate::node::sandbox::{self, netns};
use crate::node::{ContainerRecord, NodeDirs, NodeError};

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl PodWorker {
    fn bundle(&self, id: &str) -> std::path::PathBuf {
        self.ctx.dirs.bundle(&self.uid, id)
    }

    /// Picks up containers recorded on disk: running ones are kept as they are, exited ones
    /// report their exit.
    pub(super) async fn adopt(&mut self) {
        let records = self.record.containers.clone();
        if records.is_empty() {
            return;
        }
        let running: Vec<runtime::ContainerState> =
            self.ctx.runtime.list().await.unwrap_or_default();
        for (name, rec) in records {
            let bundle = self.bundle(&rec.id);
            let mut s = ContainerState {
                attempt: rec.attempt,
                id: Some(rec.id.clone()),
                started_at: std::fs::read_to_string(bundle.join("started")).ok(),
                ..Default::default()
            };
            if let Some(exit) = runtime::exited(&bundle) {
                s.exit = Some(exit);
                s.pid = Some(0);
            } else if let Some(st) = running
                .iter()
                .find(|c| c.id == rec.id && c.status == "running")
            {
                s.pid = Some(st.pid);
                s.started_instant = Some(Instant::now());
                info!(pod = %self.name, container = %name, pid = st.pid, "adopted running container");
            } else {
                // Neither running nor exited cleanly (the host rebooted): start it again.
                s.exit = Some(runtime::ExitRecord {
                    exit_code: 255,
                    signal: None,
                    finished_at: crate::api_time_now(),
                });
                s.pid = Some(0);
            }
            self.containers.insert(name, s);
        }
        if let Ok(ip) = std::fs::read_to_string(self.ctx.dirs.pod(&self.uid).join("ip")) {
            self.pod_ip = Some(ip.trim().to_string());
        }
    }

    async fn setup(&mut self, pod: &Pod) -> Result<(), NodeError> {
        // Checked once per worker (reading the mount table on every pass is not free).
        if !self.sandbox_ready {
            if self.pod_ip.is_none() || !netns::is_mounted(&NodeDirs::netns(&self.uid)) {
                let ip = self.ctx.sandboxes.setup(&self.uid).await?;
                let dir = self.ctx.dirs.pod(&self.uid);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("ip"), ip.to_string())?;
                self.pod_ip = Some(ip.to_string());
            }
            self.sandbox_ready = true;
        }
        if self.volumes.is_none() {
            let root = self.ctx.dirs.volumes(&self.uid);
            let prepared = volumes::prepare(&self.ctx.client, pod, &root, &mut self.tokens);
            self.volumes = Some(prepared.await?);
        } else {
            self.tokens.refresh(&self.ctx.client, pod).await;
        }
        if self.etc.is_none() {
            let ip = self.pod_ip.clone().unwrap_or_default();
            let dir = self.ctx.dirs.pod(&self.uid).join("etc");
            self.etc = Some(sandbox::write_etc_files(&dir, pod, &ip, &self.ctx.dns)?);
        }
        Ok(())
    }

    /// One reconcile pass; returns when the worker should look again.
    pub(super) async fn sync(&mut self, pod: &Pod) -> Option<Instant> {
        if let Err(e) = self.setup(pod).await {
            warn!(pod = %self.name, error = %e, "pod sandbox not ready");
            self.setup_error = Some(e.to_string());
            return Some(Instant::now() + Duration::from_secs(1));
        }
        self.setup_error = None;
        let spec = pod.spec.clone()?;
        let mut wake = None;
        self.observe_exits().await;
        // Init containers, one at a time, in order.
        for c in spec.init_containers.iter().flatten() {
            let s = self.containers.entry(c.name.clone()).or_default();
            if s.succeeded() {
                continue;
            }
            if s.running() {
                return Some(Instant::now() + Duration::from_millis(500));
            }
            if s.exit.is_some() && restart_policy(pod) == "Never" {
                return None;
            }
            wake = earliest(wake, self.ensure_started(pod, c).await);
            return earliest(wake, Some(Instant::now() + Duration::from_millis(500)));
        }
        let policy = restart_policy(pod).to_string();
        for c in &spec.containers {
            let s = self.containers.entry(c.name.clone()).or_default();
            let restart = match (&s.exit, policy.as_str()) {
                (None, _) => true,
                (Some(_), "Always") => true,
                (Some(e), "OnFailure") => e.exit_code != 0,
                _ => false,
            };
            if s.running() {
                wake = earliest(wake, self.probe(pod, c).await);
            } else if restart {
                wake = earliest(wake, self.ensure_started(pod, c).await);
            }
        }
        if self.containers.values().any(ContainerState::running) {
            wake = earliest(wake, Some(Instant::now() + Duration::from_millis(500)));
        }
        wake
    }

    /// Notices containers whose shim wrote an exit record, and cleans up after them.
    async fn observe_exits(&mut self) {
        for (name, id) in self.running_ids() {
            let bundle = self.bundle(&id);
            let Some(exit) = runtime::exited(&bundle) else {
                continue;
            };
            info!(pod = %self.name, container = %name, code = exit.exit_code, "container exited");
            if let Err(e) = self.ctx.runtime.delete(&id).await {
                warn!(container = %id, error = %e, "runc delete failed");
            }
            if let Err(e) = rootfs::release(&bundle) {
                warn!(container = %id, error = %e, "rootfs cleanup failed");
            }
            if let Some(s) = self.containers.get_mut(&name) {
                s.exit = Some(exit);
                s.schedule_restart(Instant::now());
            }
        }
    }

    /// Runs the probes of a running container; restarts it on a liveness/startup failure.
    async fn probe(&mut self, pod: &Pod, c: &Container) -> Option<Instant> {
        let ip = self.pod_ip.clone().unwrap_or_default();
        let runtime = self.ctx.runtime.clone();
        let s = self.containers.get_mut(&c.name)?;
        let id = s.id.clone()?;
        let started = s.started_instant.unwrap_or_else(Instant::now);
        let (verdict, next) = s
            .probes
            .tick(
                &super::probes::Target {
                    container: c,
                    started_at: started,
                    pod_ip: &ip,
                    runtime: &runtime,
                    id: &id,
                },
                Instant::now(),
            )
            .await;
        if let Verdict::Restart(why) = verdict {
            info!(pod = %self.name, container = %c.name, reason = %why, "killing container");
            let secs = c
                .liveness_probe
                .as_ref()
                .and_then(|p| p.termination_grace_period_seconds)
                .or(pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            let grace = Duration::from_secs(secs.max(0) as u64);
            self.stop_container(&c.name, grace).await;
        }
        next
    }

    /// Starts the container unless it is backing off; returns when to look again.
    async fn ensure_started(&mut self, pod: &Pod, c: &Container) -> Option<Instant> {
        let now = Instant::now();
        let s = self.containers.entry(c.name.clone()).or_default();
        if let Some(t) = s.not_before.filter(|t| *t > now) {
            let pulling = s
                .waiting
                .as_ref()
                .is_some_and(|w| w.0 == "ErrImagePull" || w.0 == "ImagePullBackOff");
            if pulling {
                let image = c.image.clone().unwrap_or_default();
                s.waiting = Some((
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image {image:?}"),
                ));
            } else if s.exit.is_some() {
                s.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        s.backoff.unwrap_or_default().as_secs(),
                        c.name,
                        self.name,
                        self.namespace,
                        self.uid
                    ),
                ));
            }
            return Some(t);
        }
        let image = match self.image(c).await {
            Ok(i) => i,
            Err(wake) => return Some(wake),
        };
        match self.start(pod, c, &image).await {
            Ok(()) => None,
            Err(e) => {
                warn!(pod = %self.name, container = %c.name, error = %e, "container start failed");
                let s = self.containers.entry(c.name.clone()).or_default();
                let delay = s
                    .schedule_restart(Instant::now())
                    .max(Duration::from_secs(1));
                s.not_before = Some(Instant::now() + delay);
                let reason = match e {
                    NodeError::ContainerConfig(_) => "CreateContainerConfigError",
                    _ => "CreateContainerError",
                };
                s.waiting = Some((reason.into(), e.to_string()));
                Some(Instant::now() + delay)
            }
        }
    }

    /// The image per imagePullPolicy; on failure marks ErrImagePull / ImagePullBackOff and
    /// returns when to retry.
    async fn image(&mut self, c: &Container) -> Result<ImageRecord, Instant> {
        let reference = c.image.clone().unwrap_or_default();
        match self
            .ctx
            .ensure_image(&reference, c.image_pull_policy.as_deref())
            .await
        {
            Ok(img) => {
                let s = self.containers.entry(c.name.clone()).or_default();
                if s.waiting.as_ref().is_some_and(|w| w.0.contains("Image")) {
                    s.waiting = None;
                    s.backoff = None;
                    s.not_before = None;
                }
                s.image = Some(img.clone());
                Ok(img)
            }
            Err((reason, message)) => {
                let s = self.containers.entry(c.name.clone()).or_default();
                let delay = s
                    .schedule_restart(Instant::now())
                    .max(Duration::from_secs(1));
                s.not_before = Some(Instant::now() + delay);
                s.waiting = Some((reason, message));
                Err(Instant::now() + delay)
            }
        }
    }

    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        image: &ImageRecord,
    ) -> Result<(), NodeError> {
        let ip = self.pod_ip.clone().unwrap_or_default();
        let hostname = sandbox::etc_hostname(pod);
        let envs =
            env::environment(&self.ctx.client, pod, c, &image.config, &ip, &hostname).await?;
        let args = env::command_line(c, &image.config, &envs);
        let s = self.containers.entry(c.name.clone()).or_default();
        // The attempt number: a fresh container starts at 0, each restart adds one.
        let attempt = if s.id.is_some() { s.attempt + 1 } else { 0 };
        let old = s.id.clone();
        let id = container::runc_id(&self.uid, &c.name, attempt);
        let (Some(volumes), Some(etc)) = (self.volumes.as_ref(), self.etc.as_ref()) else {
            return Err(NodeError::Pod("sandbox not prepared".into()));
        };
        let bundle = self.bundle(&id);
        // A leftover of an interrupted start of the same attempt (runc state exists only
        // with its bundle; checking first keeps a runc call off every start).
        if bundle.exists() {
            let _ = self.ctx.runtime.delete(&id).await;
            rootfs::remove_bundle(&bundle)?;
        }
        // The rootfs first: the image's USER is resolved in its /etc/passwd.
        rootfs::mount_rootfs(&bundle, &self.ctx.images.lower_dirs(image)?)?;
        let written = container::container_spec(SpecInput {
            pod,
            container: c,
            image,
            env: envs,
            args,
            volumes,
            etc,
            netns: NodeDirs::netns(&self.uid),
            hostname,
            sub_paths: self
                .ctx
                .dirs
                .pod(&self.uid)
                .join("volume-subpaths")
                .join(&c.name),
            cgroups_path: format!("/skiff/{}/{}", self.ctx.node_name, id),
            rootfs: rootfs::rootfs(&bundle),
            pids_limit: self.ctx.pids_limit,
        })
        .and_then(|spec| bundle::write(&bundle, &spec).map_err(NodeError::from));
        if let Err(e) = written {
            let _ = rootfs::remove_bundle(&bundle);
            return Err(e);
        }
        let log = self.ctx.dirs.log_path(&self.uid, &c.name, attempt);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let pid = match self.ctx.runtime.start(&id, &bundle, &log).await {
            Ok(pid) => pid,
            Err(e) => {
                let _ = rootfs::remove_bundle(&bundle);
                return Err(e.into());
            }
        };
        let started_at = crate::api_time_now();
        let _ = std::fs::write(bundle.join("started"), &started_at);
        info!(pod = %format!("{}/{}", self.namespace, self.name), container = %c.name, attempt, pid, "container started");
        // The previous attempt's bundle is no longer needed (its log is kept).
        if let Some(old) = old.filter(|o| *o != id) {
            let _ = rootfs::remove_bundle(&self.bundle(&old));
        }
        let s = self.containers.entry(c.name.clone()).or_default();
        if let (Some(exit), Some(prev)) = (s.exit.take(), s.id.clone()) {
            s.last = Some(Terminated {
                exit,
                started_at: s.started_at.clone().unwrap_or_default(),
                id: prev,
            });
        }
        s.attempt = attempt;
        s.id = Some(id.clone());
        s.pid = Some(pid);
        s.started_at = Some(started_at);
        s.started_instant = Some(Instant::now());
        s.waiting = None;
        s.probes = Default::default();
        self.record
            .containers
            .insert(c.name.clone(), ContainerRecord { id, attempt });
        self.save_record();
        Ok(())
    }

    /// SIGTERM, up to `grace` seconds, then SIGKILL; waits for the exit record.
    pub(super) async fn stop_container(&mut self, name: &str, grace: Duration) {
        let Some(s) = self.containers.get(name) else {
            return;
        };
        let Some(id) = s.id.clone().filter(|_| s.running()) else {
            return;
        };
        let bundle = self.bundle(&id);
        let rt = self.ctx.runtime.clone();
        if !grace.is_zero() {
            if let Err(e) = rt.kill(&id, "TERM").await {
                warn!(container = %id, error = %e, "SIGTERM failed");
            }
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && runtime::exited(&bundle).is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if runtime::exited(&bundle).is_none() {
            let _ = rt.kill(&id, "KILL").await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && runtime::exited(&bundle).is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.observe_exits().await;
    }

    /// Stops every running container (in parallel would be faster; pods are small).
    pub(super) async fn terminate(&mut self, grace: i64) {
        let names: Vec<String> = self.containers.keys().cloned().collect();
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        for name in names {
            // All containers share one grace period, as upstream.
            let left = deadline.saturating_duration_since(Instant::now());
            self.stop_container(&name, left).await;
        }
    }

    /// Removes containers, bundles, the sandbox and the pod's directory.
    pub(super) async fn cleanup(&mut self) {
        for s in self.containers.values() {
            if let Some(id) = &s.id {
                let _ = self.ctx.runtime.delete(id).await;
                let _ = rootfs::remove_bundle(&self.bundle(id));
            }
        }
        if let Err(e) = self.ctx.sandboxes.teardown(&self.uid).await {
            warn!(pod = %self.name, error = %e, "sandbox teardown failed");
        }
        let dir = self.ctx.dirs.pod(&self.uid);
        // Volume tmpfs and subPath binds first: removing the directory must not descend
        // into them (and a mount point cannot be removed).
        super::mounts::unmount_under(&dir);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %dir.display(), error = %e, "cannot remove pod directory");
            }
        }
    }

    pub(super) fn status(&self, pod: &Pod) -> Value {
        let spec = pod.spec.as_ref();
        let inits: Vec<&Container> = spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .collect();
        let initialized = inits.iter().all(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(ContainerState::succeeded)
        });
        let policy = restart_policy(pod);
        let init_failed = policy == "Never"
            && inits.iter().any(|c| {
                self.containers
                    .get(&c.name)
                    .is_some_and(|s| s.exit.as_ref().is_some_and(|e| e.exit_code != 0))
            });
        let apps: Vec<&Container> = spec.into_iter().flat_map(|s| s.containers.iter()).collect();
        let states: Vec<Option<&ContainerState>> =
            apps.iter().map(|c| self.containers.get(&c.name)).collect();
        let all_exited = states.iter().all(|s| s.is_some_and(|s| s.exit.is_some()));
        let any_running = states
            .iter()
            .any(|s| s.is_some_and(ContainerState::running));
        let all_ok = states
            .iter()
            .all(|s| s.is_some_and(ContainerState::succeeded));
        let phase = if init_failed {
            "Failed"
        } else if all_exited && policy != "Always" && (all_ok || policy == "Never") {
            if all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if initialized
            && (any_running || states.iter().all(|s| s.is_some_and(|s| s.id.is_some())))
        {
            "Running"
        } else {
            "Pending"
        };
        let mut v = status::pod_status(&status::Snapshot {
            pod,
            containers: &self.containers,
            host_ip: &self.ctx.host_ip,
            pod_ip: self.pod_ip.clone(),
            start_time: &self.start_time,
            initialized,
            phase,
        });
        if let Some(err) = &self.setup_error {
            v["message"] = Value::String(err.clone());
        }
        v
    }
}
