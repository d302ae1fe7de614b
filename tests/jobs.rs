//! The Job and CronJob controllers against three `skiff server` processes with simulated
//! nodes: completions and parallelism, back-off limit, active deadline, Indexed mode, TTL
//! after finishing, CronJobs on a sped-up clock (Forbid, history limits, suspend) and
//! `kubectl create job --from=cronjob/...`.
//!
//! The fake node agents register the nodes, but this test plays the kubelet for pods itself:
//! the fake agent marks every pod that is not Running as Running, which would undo a pod
//! finishing. Nodes are therefore "down" for the fake agent (with a node grace long enough
//! that they stay Ready) and `kubelet` below marks pods Running once, finishes graceful
//! deletions, and `finish` ends a pod as a kubelet would report it.

#[path = "common/fake_nodes.rs"]
mod fake_nodes;
#[path = "common/poll.rs"]
#[allow(dead_code)]
mod poll;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use poll::{poll, until};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_nodes::FakeNodes;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use servers::Servers;

const CONFIG: &str = "[controllers]\nresync_seconds = 5\ncronjob_clock_speed = 60\nnode_monitor_grace_seconds = 3600\n";

struct Env {
    servers: Servers,
    client: Client,
    _nodes: FakeNodes,
    stop: Arc<AtomicBool>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn env() -> Env {
    let servers = tokio::task::block_in_place(|| Servers::start(3, CONFIG));
    let client = servers.client(1);
    let nodes = FakeNodes::start(client.clone()).await;
    for name in ["w1", "w2"] {
        nodes.add(name, "16", &[], json!([])).await;
        nodes.set_down(name);
    }
    let stop = Arc::new(AtomicBool::new(false));
    kubelet(client.clone(), stop.clone());
    Env {
        servers,
        client,
        _nodes: nodes,
        stop,
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Marks each bound pod Running and Ready once, and completes graceful deletions.
fn kubelet(client: Client, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut events =
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
        let mut started: HashSet<String> = HashSet::new();
        while let Some(ev) = events.next().await {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let pod = match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
            let uid = pod.uid().unwrap_or_default();
            if !bound || phase(&pod) != "Pending" && !phase(&pod).is_empty() || !started.insert(uid)
            {
                continue;
            }
            let t = now();
            let patch = json!({"status": {
                "phase": "Running",
                "startTime": t,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}],
                "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                    "image": "busybox", "imageID": "", "state": {"running": {"startedAt": t}}}],
            }});
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await;
        }
    });
}

/// Ends a pod's container as a kubelet reports it: Succeeded (exit 0) or Failed (exit 1).
async fn finish(client: &Client, p: &Pod, ok: bool) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
    let t = now();
    let (phase, code, reason) = if ok {
        ("Succeeded", 0, "Completed")
    } else {
        ("Failed", 1, "Error")
    };
    let patch = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t}],
        "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0,
            "image": "busybox", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": t, "finishedAt": t}}}],
    }});
    api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("finish pod");
}

impl Env {
    fn kubectl(&self, args: &[&str]) -> String {
        let (ok, text) = self.servers.kubectl(args);
        assert!(ok, "kubectl {}: {text}", args.join(" "));
        text
    }

    async fn namespace(&self, name: &str) {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
    }

    async fn create_job(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}});
        let job: Job =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("job");
        Api::<Job>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &job)
            .await
            .expect("create job");
    }

    async fn job(&self, ns: &str, name: &str) -> Option<Job> {
        Api::<Job>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .expect("get job")
    }

    /// Pods whose controller is the Job `job`.
    async fn pods_of(&self, ns: &str, job: &str) -> Vec<Pod> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("pods")
            .items;
        pods.into_iter()
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.kind == "Job" && o.name == job && o.controller == Some(true))
            })
            .collect()
    }

    async fn condition(&self, ns: &str, name: &str, type_: &str) -> Option<String> {
        let job = self.job(ns, name).await?;
        job.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .map(|c| c.reason.unwrap_or_default())
    }

    async fn wait_condition(&self, ns: &str, name: &str, type_: &str) -> String {
        let what = format!("{ns}/{name} {type_}");
        poll(Duration::from_secs(60), &what, || {
            self.condition(ns, name, type_)
        })
        .await
    }
}

fn active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
}

/// Succeeds running pods until the Job completes, never seeing more than `parallelism` active.
async fn run_to_completion(e: &Env, ns: &str, name: &str, parallelism: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while e.condition(ns, name, "Complete").await.is_none() {
        assert!(Instant::now() < deadline, "{ns}/{name} never completed");
        let pods = e.pods_of(ns, name).await;
        let running: Vec<&Pod> = pods.iter().filter(|p| active(p)).collect();
        assert!(
            running.len() <= parallelism,
            "{} active pods",
            running.len()
        );
        for p in running.into_iter().filter(|p| phase(p) == "Running") {
            finish(&e.client, p, true).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn completions_and_parallelism(e: &Env) {
    e.namespace("work").await;
    e.create_job("work", "work", json!({"completions": 5, "parallelism": 2}))
        .await;
    run_to_completion(e, "work", "work", 2).await;
    let pods = e.pods_of("work", "work").await;
    let ok = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    assert_eq!((ok, pods.len()), (5, 5), "exactly five pods, all succeeded");
    let st = e
        .job("work", "work")
        .await
        .and_then(|j| j.status)
        .expect("status");
    assert_eq!(st.succeeded, Some(5));
    assert!(st.active.unwrap_or(0) == 0 && st.completion_time.is_some() && st.start_time.is_some());
    let labels = pods[0].labels();
    assert_eq!(labels.get("job-name").map(String::as_str), Some("work"));
    assert!(labels.contains_key("batch.kubernetes.io/controller-uid"));
    let out = e.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "-n",
        "work",
        "--timeout=60s",
    ]);
    assert!(out.contains("condition met"), "{out}");
}

async fn backoff_limit(e: &Env) {
    e.namespace("flaky").await;
    e.create_job("flaky", "flaky", json!({"backoffLimit": 1}))
        .await;
    for round in 1..=2 {
        let running = poll(
            Duration::from_secs(40),
            &format!("failing pod {round}"),
            || async {
                let pods = e.pods_of("flaky", "flaky").await;
                assert!(
                    pods.len() <= round,
                    "pod {} before pod {round} failed",
                    pods.len()
                );
                pods.into_iter().find(|p| phase(p) == "Running")
            },
        )
        .await;
        finish(&e.client, &running, false).await;
    }
    assert_eq!(
        e.wait_condition("flaky", "flaky", "Failed").await,
        "BackoffLimitExceeded"
    );
    let out = e.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "-n",
        "flaky",
        "--timeout=30s",
    ]);
    assert!(out.contains("condition met"), "{out}");
    let st = e
        .job("flaky", "flaky")
        .await
        .and_then(|j| j.status)
        .expect("status");
    assert_eq!(st.failed, Some(2));
    // No replacement after failing for good (a resync included).
    let quiet = Instant::now() + Duration::from_secs(6);
    while Instant::now() < quiet {
        assert_eq!(
            e.pods_of("flaky", "flaky").await.len(),
            2,
            "no pod after the Job failed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn active_deadline(e: &Env) {
    e.namespace("slow").await;
    e.create_job(
        "slow",
        "slow",
        json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 4}),
    )
    .await;
    until(Duration::from_secs(20), "slow pods running", || async {
        e.pods_of("slow", "slow")
            .await
            .iter()
            .any(|p| phase(p) == "Running")
    })
    .await;
    assert_eq!(
        e.wait_condition("slow", "slow", "Failed").await,
        "DeadlineExceeded"
    );
    until(Duration::from_secs(20), "slow pods deleted", || async {
        e.pods_of("slow", "slow").await.is_empty()
    })
    .await;
}

async fn indexed(e: &Env) {
    e.namespace("idx").await;
    e.create_job(
        "idx",
        "idx",
        json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
    )
    .await;
    run_to_completion(e, "idx", "idx", 2).await;
    let pods = e.pods_of("idx", "idx").await;
    let mut seen = Vec::new();
    for p in &pods {
        let i: i32 = p.annotations()["batch.kubernetes.io/job-completion-index"]
            .parse()
            .expect("index");
        assert!(
            p.name_any().starts_with(&format!("idx-{i}-")),
            "{}",
            p.name_any()
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env
            .iter()
            .any(|v| v.name == "JOB_COMPLETION_INDEX" && v.value == Some(i.to_string())));
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3], "each index exactly once");
    let st = e
        .job("idx", "idx")
        .await
        .and_then(|j| j.status)
        .expect("status");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-3"));
}

async fn ttl_after_finished(e: &Env) {
    e.namespace("ttl").await;
    e.create_job("ttl", "short", json!({"ttlSecondsAfterFinished": 1}))
        .await;
    // Its pod succeeds; the Job completes and is deleted a second later (possibly before this
    // test sees it complete: only a finished Job is ever deleted for its TTL).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let Some(job) = e.job("ttl", "short").await else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "ttl/short not deleted: {:?}",
            job.status
        );
        for p in e
            .pods_of("ttl", "short")
            .await
            .iter()
            .filter(|p| phase(p) == "Running")
        {
            finish(&e.client, p, true).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn finished(j: &Job) -> bool {
    j.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

async fn cronjob(e: &Env) {
    e.namespace("cron").await;
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 2,
            "jobTemplate": {"metadata": {"labels": {"from": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}},
    }))
    .expect("cronjob");
    let cjs: Api<CronJob> = Api::namespaced(e.client.clone(), "cron");
    cjs.create(&PostParams::default(), &cj)
        .await
        .expect("create cronjob");
    let jobs: Api<Job> = Api::namespaced(e.client.clone(), "cron");
    let owned = || async {
        let all = jobs.list(&ListParams::default()).await.expect("jobs").items;
        all.into_iter()
            .filter(|j| {
                j.owner_references()
                    .iter()
                    .any(|o| o.kind == "CronJob" && o.name == "tick")
            })
            .collect::<Vec<Job>>()
    };
    let mut ran: BTreeSet<String> = BTreeSet::new();
    for round in 0..4 {
        // Wait for the next run's pod, with never two runs active at once (Forbid).
        let ran_so_far = ran.clone();
        let pod = poll(Duration::from_secs(30), &format!("run {round}"), || async {
            let unfinished: Vec<Job> = owned().await.into_iter().filter(|j| !finished(j)).collect();
            assert!(
                unfinished.len() <= 1,
                "Forbid: {} jobs active",
                unfinished.len()
            );
            let j = unfinished
                .iter()
                .find(|j| !ran_so_far.contains(&j.name_any()))?;
            assert!(j
                .annotations()
                .contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp"));
            assert_eq!(j.labels().get("from").map(String::as_str), Some("tick"));
            let pods = e.pods_of("cron", &j.name_any()).await;
            pods.into_iter().find(|p| phase(p) == "Running")
        })
        .await;
        if round == 0 {
            // Two cron minutes pass while it runs: still no second Job.
            let quiet = Instant::now() + Duration::from_secs(2);
            while Instant::now() < quiet {
                let n = owned().await.iter().filter(|j| !finished(j)).count();
                assert_eq!(n, 1, "Forbid keeps a single active Job");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let job = pod.owner_references()[0].name.clone();
        finish(&e.client, &pod, true).await;
        ran.insert(job);
    }
    until(Duration::from_secs(20), "history pruned to 2", || async {
        owned().await.iter().filter(|j| finished(j)).count() == 2
    })
    .await;
    let st = cjs
        .get("tick")
        .await
        .expect("cronjob")
        .status
        .expect("status");
    assert!(st.last_schedule_time.is_some() && st.last_successful_time.is_some());

    // Suspended: runs in progress may end, no new ones start.
    cjs.patch(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    // A run the controller started as the patch arrived may still appear; anything created
    // two seconds (two cron hours at this clock) after it may not.
    let cutoff = jiff::Timestamp::now().as_second() + 2;
    for j in owned().await.iter().filter(|j| !finished(j)) {
        for p in e
            .pods_of("cron", &j.name_any())
            .await
            .iter()
            .filter(|p| active(p))
        {
            finish(&e.client, p, true).await;
        }
    }
    let quiet = Instant::now() + Duration::from_secs(4);
    while Instant::now() < quiet {
        let late: Vec<String> = owned()
            .await
            .iter()
            .filter(|j| {
                j.metadata
                    .creation_timestamp
                    .as_ref()
                    .is_some_and(|t| t.0.as_second() > cutoff)
            })
            .map(|j| j.name_any())
            .collect();
        assert!(late.is_empty(), "a Job started while suspended: {late:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn manual_job_from_cronjob(e: &Env) {
    e.namespace("manual").await;
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "base"},
        "spec": {"schedule": "@yearly", "suspend": true, "timeZone": "Europe/Paris",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}},
    }))
    .expect("cronjob");
    Api::<CronJob>::namespaced(e.client.clone(), "manual")
        .create(&PostParams::default(), &cj)
        .await
        .expect("create cronjob");
    e.kubectl(&[
        "create",
        "job",
        "--from=cronjob/base",
        "by-hand",
        "-n",
        "manual",
    ]);
    let job = e.job("manual", "by-hand").await.expect("job");
    assert!(job
        .owner_references()
        .iter()
        .any(|o| o.kind == "CronJob" && o.name == "base"));
    run_to_completion(e, "manual", "by-hand", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_and_cronjobs() {
    let e = env().await;
    tokio::join!(
        completions_and_parallelism(&e),
        backoff_limit(&e),
        active_deadline(&e),
        indexed(&e),
        ttl_after_finished(&e),
        cronjob(&e),
        manual_job_from_cronjob(&e),
    );
}
