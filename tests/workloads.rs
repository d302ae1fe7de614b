//! Workload controllers in the three-node lab, as root, with real pods (runc): a StatefulSet
//! with local-path volumes (ordered creation seen through a watch, stable DNS names, a pod
//! replaced on the same node with its data, scale-down in reverse keeping the claims, scale-up
//! reusing them).

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
use serde_json::Value;

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
}
