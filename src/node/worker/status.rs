//! The pod status the agent reports, as upstream: phase, conditions (PodScheduled,
//! Initialized, ContainersReady, Ready), container statuses, IPs and start time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use super::container::{ContainerState, Terminated};

fn time(s: &str) -> Option<Time> {
    s.parse::<jiff::Timestamp>().ok().map(Time)
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    let code = t.exit.exit_code;
    ContainerStateTerminated {
        exit_code: code,
        signal: t.exit.signal,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
        started_at: time(&t.started_at),
        finished_at: time(&t.exit.finished_at),
        container_id: Some(format!("runc://{}", t.id)),
        ..Default::default()
    }
}

/// `host:port/repo:tag` -> `host:port/repo`.
fn repository(reference: &str) -> &str {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

pub fn container_status(c: &Container, s: Option<&ContainerState>) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    let Some(s) = s else {
        return ContainerStatus {
            name: c.name.clone(),
            image,
            state: Some(KState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("PodInitializing".into()),
                    message: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
    };
    let state = if let (Some(exit), Some(id)) = (&s.exit, &s.id) {
        if s.waiting.is_some() {
            None
        } else {
            Some(KState {
                terminated: Some(terminated(&Terminated {
                    exit: exit.clone(),
                    started_at: s.started_at.clone().unwrap_or_default(),
                    id: id.clone(),
                })),
                ..Default::default()
            })
        }
    } else if s.running() {
        Some(KState {
            running: Some(ContainerStateRunning {
                started_at: s.started_at.as_deref().and_then(time),
            }),
            ..Default::default()
        })
    } else {
        None
    };
    let state = state.unwrap_or_else(|| {
        let (reason, message) = s
            .waiting
            .clone()
            .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
        KState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason),
                message: (!message.is_empty()).then_some(message),
            }),
            ..Default::default()
        }
    });
    let running = s.running();
    ContainerStatus {
        name: c.name.clone(),
        image: s
            .image
            .as_ref()
            .map(|i| i.reference.clone())
            .unwrap_or(image),
        image_id: s
            .image
            .as_ref()
            .map(|i| format!("{}@{}", repository(&i.reference), i.digest))
            .unwrap_or_default(),
        container_id: s
            .id
            .as_ref()
            .filter(|_| running || s.exit.is_some())
            .map(|id| format!("runc://{id}")),
        ready: running && s.probes.started && s.probes.ready,
        started: Some(running && s.probes.started),
        restart_count: s.attempt as i32,
        state: Some(state),
        last_state: Some(KState {
            // While waiting to restart, the exit just seen is the last state.
            terminated: match (&s.exit, &s.id, &s.waiting) {
                (Some(exit), Some(id), Some(_)) => Some(terminated(&Terminated {
                    exit: exit.clone(),
                    started_at: s.started_at.clone().unwrap_or_default(),
                    id: id.clone(),
                })),
                _ => s.last.as_ref().map(terminated),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    previous: Option<&Pod>,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status does.
    let since = previous
        .and_then(|p| p.status.as_ref()?.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| now.to_string());
    let mut v = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason.filter(|_| !ok) {
        v["reason"] = json!(r);
    }
    v
}

pub struct Snapshot<'a> {
    pub pod: &'a Pod,
    pub containers: &'a BTreeMap<String, ContainerState>,
    pub host_ip: &'a str,
    pub pod_ip: Option<String>,
    pub start_time: &'a str,
    /// Init containers all succeeded.
    pub initialized: bool,
    /// `Some(message)` when the pod failed for good (restartPolicy Never/OnFailure).
    pub phase: &'a str,
}

pub fn pod_status(s: &Snapshot<'_>) -> Value {
    let spec = s.pod.spec.as_ref();
    let now = crate::api_time_now();
    let init: Vec<ContainerStatus> = spec
        .into_iter()
        .flat_map(|sp| sp.init_containers.iter().flatten())
        .map(|c| container_status(c, s.containers.get(&c.name)))
        .collect();
    let apps: Vec<ContainerStatus> = spec
        .into_iter()
        .flat_map(|sp| sp.containers.iter())
        .map(|c| container_status(c, s.containers.get(&c.name)))
        .collect();
    let all_ready = !apps.is_empty() && apps.iter().all(|c| c.ready);
    let finished = s.phase == "Succeeded" || s.phase == "Failed";
    let ready = all_ready && !finished;
    let reason = if finished {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            s.pod_ip.is_some(),
            None,
            Some(s.pod),
            &now,
        ),
        condition(
            "Initialized",
            s.initialized,
            Some("ContainersNotInitialized"),
            Some(s.pod),
            &now,
        ),
        condition("Ready", ready, Some(reason), Some(s.pod), &now),
        condition("ContainersReady", ready, Some(reason), Some(s.pod), &now),
        condition("PodScheduled", true, None, Some(s.pod), &now),
    ];
    let mut v = json!({
        "phase": s.phase,
        "conditions": conditions,
        "hostIP": s.host_ip,
        "hostIPs": [{"ip": s.host_ip}],
        "startTime": s.start_time,
        "containerStatuses": apps,
    });
    if !init.is_empty() {
        v["initContainerStatuses"] = json!(init);
    }
    if let Some(ip) = &s.pod_ip {
        v["podIP"] = json!(ip);
        v["podIPs"] = json!([{ "ip": ip }]);
    }
    v
}
