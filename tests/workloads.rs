//! Workload controllers in the three-node lab, as root, with real pods (runc): a StatefulSet
//! with local-path volumes (ordered creation seen through a watch, stable DNS names, a pod
//! replaced on the same node with its data, scale-down in reverse keeping the claims, scale-up
//! reusing them); a DaemonSet following a joining node and rolling an image change; Jobs
//! (completions/parallelism, backoffLimit, activeDeadlineSeconds); a CronJob on a sped-up
//! controller clock (Forbid, history, suspend).

#[path = "common/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lab::*;
use serde_json::{json, Value};

/// `kubectl get pods -l SELECTOR --watch` as lines `EVENT NAME READY`, collected in order.
struct PodWatch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl PodWatch {
    fn start(lab: &TestLab, selector: &str) -> PodWatch {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(lab.lab_dir().join("kubeconfig"))
            .args(["get", "pods", "-l", selector, "--watch", "--output-watch-events"])
            .arg(r#"-o=jsonpath={.type} {.object.metadata.name} {.object.status.conditions[?(@.type=="Ready")].status}{"\n"}"#)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = lines.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out.lock().expect("lock").push(line);
            }
        });
        PodWatch { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first(lines: &[String], pred: impl Fn(&[&str]) -> bool) -> Option<usize> {
    lines.iter().position(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        pred(&f)
    })
}

/// `cat FILE` in `pod`.
fn read_in(lab: &TestLab, pod: &str, file: &str) -> String {
    text(&lab.kubectl("/usr/bin/kubectl", &["exec", pod, "--", "cat", file]))
        .trim()
        .to_string()
}

fn statefulset_yaml(replicas: usize) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      # sleep as PID 1 ignores SIGTERM: no reason to wait 30 s for it on every deletion.
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {IMAGE}
        # The first start writes the ordinal and a birth mark; later starts keep them.
        command: ["sh", "-c", "h=$(hostname); [ -f /data/ordinal ] || {{ echo ${{h##*-}} > /data/ordinal; cat /proc/sys/kernel/random/uuid > /data/born; }}; exec sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 16Mi}}}}
"#
    )
}

fn claims(lab: &TestLab) -> BTreeMap<String, (String, String)> {
    let v: Value =
        serde_json::from_str(&lab.kubectl_ok(&["get", "pvc", "-o", "json"])).expect("json");
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    c["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["status"]["phase"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn statefulset_with_local_volumes_keeps_identity_and_data() {
    let Some((lab, _)) = lab_for("workloads", &[]) else {
        return;
    };
    let watch = PodWatch::start(&lab, "app=web");
    apply(&lab, &statefulset_yaml(3));
    let pods = running_pods(&lab, "app=web", 3);
    let node_of: BTreeMap<String, String> =
        pods.iter().map(|p| (p.0.clone(), p.1.clone())).collect();
    wait_for("web-2 Ready in the watch", Duration::from_secs(60), || {
        first(&watch.lines(), |f| {
            f.get(1) == Some(&"web-2") && f.get(2) == Some(&"True")
        })
        .is_some()
    });
    // Strictly in order: web-N is added only after web-(N-1) was seen Ready.
    let lines = watch.lines();
    for i in 1..3 {
        let added = first(&lines, |f| {
            f[0] == "ADDED" && f.get(1) == Some(&format!("web-{i}").as_str())
        })
        .unwrap_or_else(|| panic!("web-{i} added: {lines:?}"));
        let prev_ready = first(&lines, |f| {
            f.get(1) == Some(&format!("web-{}", i - 1).as_str()) && f.get(2) == Some(&"True")
        })
        .unwrap_or_else(|| panic!("web-{} ready: {lines:?}", i - 1));
        assert!(prev_ready < added, "created out of order: {lines:?}");
    }
    // Each pod wrote its ordinal into its own volume, bound to a local-path volume.
    for i in 0..3 {
        assert_eq!(
            read_in(&lab, &format!("web-{i}"), "/data/ordinal"),
            i.to_string()
        );
    }
    let before = claims(&lab);
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(
        before.values().all(|(_, phase)| phase == "Bound"),
        "{before:?}"
    );
    let sc = lab.kubectl_ok(&["get", "storageclass"]);
    assert!(sc.contains("local-path (default)"), "{sc}");

    // Stable network identity through the headless service.
    let client = run_client(&lab);
    let web0_ip = &pods.iter().find(|p| p.0 == "web-0").expect("web-0").2;
    let out = text(&lab.kubectl(
        "/usr/bin/kubectl",
        &["exec", &client, "--", "nslookup", "web-0.web"],
    ));
    assert!(
        out.contains(web0_ip.as_str()),
        "web-0.web -> {web0_ip}: {out}"
    );

    // web-1 replaced: same name, same node, same data.
    let born = read_in(&lab, "web-1", "/data/born");
    lab.kubectl_ok(&["delete", "pod", "web-1"]);
    wait_for("web-1 back", Duration::from_secs(90), || {
        running_pods(&lab, "app=web", 3)
            .iter()
            .any(|p| p.0 == "web-1" && read_in(&lab, "web-1", "/data/born") == born)
    });
    let again = running_pods(&lab, "app=web", 3);
    let web1 = again.iter().find(|p| p.0 == "web-1").expect("web-1");
    assert_eq!(web1.1, node_of["web-1"], "web-1 back on its volume's node");

    // Scale to 1: web-2 goes before web-1; the claims stay.
    lab.kubectl_ok(&["scale", "statefulset/web", "--replicas=1"]);
    let _ = running_pods(&lab, "app=web", 1);
    wait_for("scale-down finished", Duration::from_secs(90), || {
        let v: Value =
            serde_json::from_str(&lab.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]))
                .expect("json");
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    });
    let lines = watch.lines();
    let gone = |name: &str| {
        lines
            .iter()
            .rposition(|l| {
                l.starts_with(&format!("DELETED {name} ")) || l == &format!("DELETED {name}")
            })
            .unwrap_or_else(|| panic!("{name} deleted: {lines:?}"))
    };
    assert!(gone("web-2") < gone("web-1"), "reverse order: {lines:?}");
    assert_eq!(
        claims(&lab).keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );

    // Back to 3: the same claims and data.
    lab.kubectl_ok(&["scale", "statefulset/web", "--replicas=3"]);
    let _ = running_pods(&lab, "app=web", 3);
    let after = claims(&lab);
    assert_eq!(
        after.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>(),
        before.iter().map(|(k, v)| (k, &v.0)).collect::<Vec<_>>(),
        "claims reused"
    );
    assert_eq!(read_in(&lab, "web-2", "/data/ordinal"), "2");

    // Reclaim: with the set gone, deleting a claim of the (Delete) local-path class removes
    // its volume and directory; a class with Retain keeps both.
    let volume_of = |claim: &str| -> (String, String) {
        let pvc = get_json(&lab, &["pvc", claim]);
        let pv_name = pvc["spec"]["volumeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pv = get_json(&lab, &["pv", &pv_name]);
        let dir = pv["spec"]["hostPath"]["path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (pv_name, dir)
    };
    let (pv2, dir2) = volume_of("data-web-2");
    assert!(
        std::path::Path::new(&dir2).join("ordinal").is_file(),
        "{dir2}"
    );
    lab.kubectl_ok(&["delete", "statefulset", "web"]);
    lab.kubectl_ok(&["delete", "pvc", "data-web-2", "--wait=false"]);
    wait_for(
        "the released volume deleted",
        Duration::from_secs(60),
        || {
            !lab.kubectl_ok(&["get", "pv", "-o", "name"]).contains(&pv2)
                && !std::path::Path::new(&dir2).exists()
        },
    );
    apply(
        &lab,
        &format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: keep}}\nprovisioner: skiff.io/local-path\nreclaimPolicy: Retain\nvolumeBindingMode: WaitForFirstConsumer\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: kept}}\nspec: {{storageClassName: keep, accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: writer, labels: {{app: writer}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{{name: c, image: \"{IMAGE}\", command: [sh, -c, \"echo kept > /data/f; exec sleep 3600\"], volumeMounts: [{{name: d, mountPath: /data}}]}}]\n  volumes: [{{name: d, persistentVolumeClaim: {{claimName: kept}}}}]\n"
        ),
    );
    let _ = running_pods(&lab, "app=writer", 1);
    let (pv_kept, dir_kept) = volume_of("kept");
    wait_for("the writer's file", Duration::from_secs(30), || {
        std::fs::read_to_string(std::path::Path::new(&dir_kept).join("f"))
            .is_ok_and(|t| t == "kept\n")
    });
    lab.kubectl_ok(&["delete", "pod", "writer"]);
    lab.kubectl_ok(&["delete", "pvc", "kept"]);
    wait_for(
        "the retained volume Released",
        Duration::from_secs(60),
        || get_json(&lab, &["pv", &pv_kept])["status"]["phase"] == "Released",
    );
    assert!(
        std::path::Path::new(&dir_kept).join("f").is_file(),
        "Retain keeps the data"
    );
}

fn get_json(lab: &TestLab, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(&a)).expect("json")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Pods of `selector` by phase.
fn phases(lab: &TestLab, selector: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in items(&get_json(lab, &["pods", "-l", selector])) {
        *out.entry(p["status"]["phase"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    out
}

fn job_yaml(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - {{name: c, image: \"{IMAGE}\", command: [\"sh\", \"-c\", \"{command}\"]}}\n"
    )
}

fn condition(lab: &TestLab, kind: &str, name: &str, ty: &str) -> Option<Value> {
    let v = get_json(lab, &[kind, name]);
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
        .cloned()
}

#[test]
fn daemonsets_jobs_and_cronjobs_in_the_lab() {
    // One cron minute per real second: a CronJob's schedule within the test's time.
    let Some((lab, _)) = lab_with_env(
        "workloads",
        &[],
        &[("SKIFF_CONTROLLERS__CRONJOB_CLOCK_SPEED", "60")],
    ) else {
        return;
    };

    // DaemonSet: one pod per node, and one on a node that joins.
    apply(
        &lab,
        &format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers: [{{name: c, image: \"{IMAGE}\", command: [sleep, \"3600\"]}}]\n"
        ),
    );
    let pods = running_pods(&lab, "app=agent", 3);
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
    assert_eq!(nodes.len(), 3, "{pods:?}");
    let joined = lab.skiff(&["lab", "join"]);
    assert!(
        joined.status.success(),
        "lab join: {}\n{}",
        text(&joined),
        lab.logs()
    );
    let pods = running_pods(&lab, "app=agent", 4);
    assert!(
        pods.iter().any(|p| p.1 == "n4"),
        "the joined node runs one: {pods:?}"
    );

    // An image change rolls out node by node; `kubectl rollout status` follows it.
    let v2 = IMAGE.replace(":latest", ":v2");
    let copied = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{UNDERLAY_NS}"))
        .args(["skopeo", "copy", "--quiet", "--insecure-policy"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{IMAGE}"))
        .arg(format!("docker://{v2}"))
        .output()
        .expect("skopeo");
    assert!(copied.status.success(), "tag v2: {}", text(&copied));
    // From four available pods (an unready old pod would be replaced on top of the budget,
    // as upstream does).
    let out = lab.kubectl(
        "/usr/bin/kubectl",
        &["rollout", "status", "ds/agent", "--timeout=120s"],
    );
    assert!(out.status.success(), "rollout status: {}", text(&out));
    let watch = PodWatch::start(&lab, "app=agent");
    lab.kubectl_ok(&["set", "image", "ds/agent", &format!("c={v2}")]);
    let out = lab.kubectl(
        "/usr/bin/kubectl",
        &["rollout", "status", "ds/agent", "--timeout=180s"],
    );
    assert!(out.status.success(), "rollout status: {}", text(&out));
    let pods = items(&get_json(&lab, &["pods", "-l", "app=agent"]));
    let images: Vec<&str> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or(""))
        .collect();
    assert!(
        images.len() == 4 && images.iter().all(|i| *i == v2),
        "{images:?}"
    );
    // maxUnavailable 1: an old pod goes only once the previous node's new pod is Ready.
    let lines = watch.lines();
    let deleting: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("DELETED "))
        .map(|(i, _)| i)
        .collect();
    assert!(deleting.len() >= 4, "{lines:?}");
    for pair in deleting.windows(2) {
        let ready_between = lines[pair[0]..pair[1]]
            .iter()
            .any(|l| l.starts_with("MODIFIED ") && l.ends_with(" True"));
        assert!(ready_between, "two nodes down at once: {lines:?}");
    }
    drop(watch);

    // Jobs: exactly `completions` successes, never more than `parallelism` at once.
    let watch = PodWatch::start(&lab, "job-name=five");
    apply(
        &lab,
        &job_yaml("five", "  completions: 5\n  parallelism: 2\n", "sleep 1"),
    );
    let out = lab.kubectl(
        "/usr/bin/kubectl",
        &[
            "wait",
            "--for=condition=complete",
            "job/five",
            "--timeout=180s",
        ],
    );
    assert!(out.status.success(), "job five: {}", text(&out));
    let by_phase = phases(&lab, "job-name=five");
    assert_eq!(by_phase.get("Succeeded"), Some(&5), "{by_phase:?}");
    assert_eq!(by_phase.values().sum::<usize>(), 5, "{by_phase:?}");
    let mut running = std::collections::BTreeSet::new();
    for l in watch.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        match (f.first(), f.get(2)) {
            (Some(&"DELETED"), _) | (_, Some(&"False")) => {
                running.remove(f[1]);
            }
            (_, Some(&"True")) => {
                running.insert(f[1].to_string());
            }
            _ => {}
        }
        assert!(running.len() <= 2, "more than 2 ready at once: {running:?}");
    }
    drop(watch);
    // A failing Job stops at its backoffLimit; a slow one at its deadline.
    apply(&lab, &job_yaml("fail", "  backoffLimit: 1\n", "exit 1"));
    apply(
        &lab,
        &job_yaml("slow", "  activeDeadlineSeconds: 3\n", "sleep 600"),
    );
    for (job, reason) in [
        ("fail", "BackoffLimitExceeded"),
        ("slow", "DeadlineExceeded"),
    ] {
        let out = lab.kubectl(
            "/usr/bin/kubectl",
            &[
                "wait",
                "--for=condition=failed",
                &format!("job/{job}"),
                "--timeout=120s",
            ],
        );
        assert!(out.status.success(), "job {job}: {}", text(&out));
        let c = condition(&lab, "job", job, "Failed").expect("Failed");
        assert_eq!(c["reason"], reason, "{c}");
    }
    assert_eq!(phases(&lab, "job-name=fail").get("Failed"), Some(&2));
    wait_for(
        "the slow Job's pod stopped",
        Duration::from_secs(60),
        || !phases(&lab, "job-name=slow").contains_key("Running"),
    );

    // CronJob every (sped-up) minute, Forbid: runs on schedule, never two at once, keeps two
    // finished Jobs; suspended, it starts no more.
    apply(
        &lab,
        &format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: tick}}\nspec:\n  schedule: \"*/1 * * * *\"\n  concurrencyPolicy: Forbid\n  successfulJobsHistoryLimit: 2\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: c, image: \"{IMAGE}\", command: [sh, -c, \"sleep 2\"]}}]\n"
        ),
    );
    let mut seen = std::collections::BTreeSet::new();
    wait_for("4 runs of the CronJob", Duration::from_secs(120), || {
        let jobs = items(&get_json(&lab, &["jobs"]));
        let mine: Vec<&Value> = jobs
            .iter()
            .filter(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("tick-"))
            })
            .collect();
        let active = mine
            .iter()
            .filter(|j| {
                j["status"]["completionTime"].is_null() && j["status"]["conditions"].is_null()
            })
            .count();
        assert!(active <= 1, "Forbid: {active} Jobs active");
        let done = mine
            .iter()
            .filter(|j| !j["status"]["completionTime"].is_null())
            .count();
        assert!(done <= 3, "history limit 2 not kept: {done} finished");
        seen.extend(
            mine.iter()
                .filter_map(|j| j["metadata"]["name"].as_str().map(String::from)),
        );
        seen.len() >= 4
    });
    let cj = get_json(&lab, &["cronjob", "tick"]);
    assert!(!cj["status"]["lastScheduleTime"].is_null(), "{cj}");
    wait_for("two finished Jobs kept", Duration::from_secs(60), || {
        items(&get_json(&lab, &["jobs"]))
            .iter()
            .filter(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("tick-"))
            })
            .filter(|j| !j["status"]["completionTime"].is_null())
            .count()
            == 2
    });
    lab.kubectl_ok(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        &json!({"spec": {"suspend": true}}).to_string(),
    ]);
    // Anything created more than 2 s (2 cron hours) after the suspension is a violation.
    let cutoff = jiff::Timestamp::now().as_second() + 2;
    let quiet = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < quiet {
        let late: Vec<String> = items(&get_json(&lab, &["jobs"]))
            .iter()
            .filter(|j| {
                j["metadata"]["creationTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t.as_second() > cutoff)
            })
            .filter_map(|j| j["metadata"]["name"].as_str().map(String::from))
            .collect();
        assert!(late.is_empty(), "Jobs started while suspended: {late:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
