//! Startup, liveness and readiness probes (httpGet, tcpSocket, exec) with upstream timing:
//! initialDelaySeconds, periodSeconds (10), timeoutSeconds (1), successThreshold (1),
//! failureThreshold (3). A startup probe holds the other two until it succeeds.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::node::runtime::Runtime;

#[derive(Default)]
struct Counter {
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    last_error: String,
}

#[derive(Default)]
pub struct ProbeState {
    pub started: bool,
    pub ready: bool,
    startup: Counter,
    liveness: Counter,
    readiness: Counter,
}

/// What the probes decided for a running container.
pub enum Verdict {
    Healthy,
    /// Kill the container (liveness or startup failure), with the event message.
    Restart(String),
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

fn port_of(c: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no port named {name:?}")),
    }
}

/// What a probe runs against: a running container of the pod.
pub struct Target<'a> {
    pub container: &'a Container,
    pub started_at: Instant,
    pub pod_ip: &'a str,
    pub runtime: &'a Runtime,
    /// runc id.
    pub id: &'a str,
}

/// Runs one probe once.
pub async fn run_once(p: &Probe, t: &Target<'_>) -> Result<(), String> {
    let (c, ip, runtime, id) = (t.container, t.pod_ip, t.runtime, t.id);
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
    let work = async {
        if let Some(h) = &p.http_get {
            let port = port_of(c, &h.port)?;
            super::http_probe::probe(h, ip, port, timeout).await
        } else if let Some(t) = &p.tcp_socket {
            let port = port_of(c, &t.port)?;
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| ip.to_string());
            TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if let Some(e) = &p.exec {
            let cmd = e.command.clone().unwrap_or_default();
            runtime.exec_status(id, &cmd).await
        } else {
            Err("probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
    }
}

impl ProbeState {
    /// Runs the probes that are due; returns the verdict and the next time one is due.
    pub async fn tick(&mut self, t: &Target<'_>, now: Instant) -> (Verdict, Option<Instant>) {
        let c = t.container;
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if !self.started {
            match &c.startup_probe {
                None => self.started = true,
                Some(p) => {
                    let r = step(&mut self.startup, p, t, now).await;
                    soonest(self.startup.next);
                    match r {
                        Some(true) => self.started = true,
                        Some(false) => {
                            return (Verdict::Restart("Startup probe failed".into()), next)
                        }
                        None => return (Verdict::Healthy, next),
                    }
                }
            }
        }
        if let Some(p) = &c.liveness_probe {
            let r = step(&mut self.liveness, p, t, now).await;
            soonest(self.liveness.next);
            if r == Some(false) {
                let why = std::mem::take(&mut self.liveness.last_error);
                return (
                    Verdict::Restart(format!("Liveness probe failed: {why}")),
                    next,
                );
            }
        }
        match &c.readiness_probe {
            None => self.ready = true,
            Some(p) => {
                let r = step(&mut self.readiness, p, t, now).await;
                soonest(self.readiness.next);
                if let Some(ok) = r {
                    self.ready = ok;
                }
            }
        }
        (Verdict::Healthy, next)
    }
}

/// One probe, if due: `Some(true)` once successThreshold successes in a row, `Some(false)`
/// once failureThreshold failures in a row, `None` otherwise.
async fn step(k: &mut Counter, p: &Probe, t: &Target<'_>, now: Instant) -> Option<bool> {
    let due = *k
        .next
        .get_or_insert(t.started_at + secs(p.initial_delay_seconds, 0));
    if now < due {
        return None;
    }
    k.next = Some(now + secs(p.period_seconds, 10).max(Duration::from_secs(1)));
    match run_once(p, t).await {
        Ok(()) => {
            k.failures = 0;
            k.successes += 1;
            (k.successes >= p.success_threshold.unwrap_or(1).max(1)).then_some(true)
        }
        Err(e) => {
            k.successes = 0;
            k.failures += 1;
            k.last_error = e;
            (k.failures >= p.failure_threshold.unwrap_or(3).max(1)).then_some(false)
        }
    }
}
