//! Real kubectl against three `skiff server` processes: every kubectl on this machine
//! (`/usr/bin/kubectl`, `/usr/lib/google-cloud-sdk/bin/kubectl.1.*` and kubectl 1.37 from
//! PyPI, which `scripts/install-deps.sh` puts in `/opt/skiff/kubectl`); 1.27, 1.33 and 1.37
//! are required under `SKIFF_E2E_REQUIRED=1`.

#[path = "common/fake_nodes.rs"]
mod fake_nodes;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use servers::Servers;

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(3, ""))
}

/// Stand-in node agents for the cluster (their pods run at once): `fake-a`, `fake-b` and one
/// node per kubectl version to drain, `drain-<minor>`. Started once; they live as long as
/// the test process.
fn nodes() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let nodes = fake_nodes::FakeNodes::start(cluster().client(0)).await;
                for n in ["fake-a", "fake-b"] {
                    nodes.add(n, "16", &[], serde_json::json!([])).await;
                }
                // Only the drain test's pods (which tolerate it) go to the drain nodes.
                let taint =
                    serde_json::json!([{"key": "drain", "value": "test", "effect": "NoSchedule"}]);
                for (m, _) in kubectls() {
                    nodes
                        .add(&format!("drain-{m}"), "16", &[], taint.clone())
                        .await;
                }
                let _ = tx.send(());
                std::future::pending::<()>().await;
            });
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("fake nodes registered");
    });
}

/// (minor version, binary) of every kubectl found, once per minor.
fn kubectls() -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    let mut candidates = vec![PathBuf::from("/usr/bin/kubectl")];
    for dir in ["/usr/lib/google-cloud-sdk/bin", "/opt/skiff/kubectl"] {
        let Ok(dir) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut v: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("kubectl.1."))
            })
            .collect();
        v.sort();
        candidates.extend(v);
    }
    for bin in candidates.into_iter().filter(|p| p.exists()) {
        let Ok(out) = Command::new(&bin)
            .args(["version", "--client", "-o", "json"])
            .output()
        else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let minor = v
            .pointer("/clientVersion/minor")
            .and_then(|m| m.as_str())
            .and_then(|m| m.trim_end_matches('+').parse().ok());
        if let Some(minor) = minor {
            if !found.iter().any(|(m, _)| *m == minor) {
                found.push((minor, bin));
            }
        }
    }
    found.sort();
    let required = std::env::var("SKIFF_E2E_REQUIRED").is_ok_and(|v| v == "1");
    for need in [27, 33, 37] {
        if !found.iter().any(|(m, _)| *m == need) {
            assert!(
                !required,
                "kubectl 1.{need} is required (SKIFF_E2E_REQUIRED=1) but not installed"
            );
            eprintln!("skipping kubectl 1.{need}: not installed");
        }
    }
    found
}

struct Kubectl {
    bin: PathBuf,
    minor: u32,
    kubeconfig: PathBuf,
    cache: PathBuf,
    ns: String,
}

impl Kubectl {
    /// A kubectl of each version, talking to a replica chosen by version, in its own
    /// namespace `<scenario>-<minor>` (created).
    fn all(scenario: &str) -> Vec<Kubectl> {
        let c = cluster();
        kubectls()
            .into_iter()
            .map(|(minor, bin)| {
                let k = Kubectl {
                    kubeconfig: c.kubeconfig(minor as usize % 3),
                    cache: c.dir.path().join(format!("kubecache-{scenario}-{minor}")),
                    ns: format!("{scenario}-{minor}"),
                    bin,
                    minor,
                };
                k.ok(&["create", "namespace", &k.ns.clone()]);
                k
            })
            .collect()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl 1.{} {}: {}{}",
            self.minor,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `env` set; (success, stdout + stderr).
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = self
            .cmd(args)
            .envs(env.iter().copied())
            .output()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl 1.{} {} should fail",
            self.minor,
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn apply(&self, manifest: &str, extra: &[&str]) -> String {
        let path =
            cluster()
                .dir
                .path()
                .join(format!("manifest-{}-{}.yaml", self.ns, extra.join("")));
        std::fs::write(&path, manifest).expect("write manifest");
        let mut args = vec!["apply", "-f", path.to_str().expect("utf-8")];
        args.extend(extra);
        self.ok(&args)
    }
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.35
        command: ["httpd", "-f", "-p", "8080"]
        env:
        - {name: KEEP, value: "1"}
        - {name: DROP, value: "2"}
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
"#;

#[test]
fn version_api_resources_and_cluster_info() {
    for k in Kubectl::all("info") {
        let v = k.ok(&["version", "-o", "json"]);
        assert!(
            v.contains("\"gitVersion\": \"v1.33.0"),
            "kubectl 1.{}: {v}",
            k.minor
        );
        let r = k.ok(&["api-resources"]);
        for needle in [
            "deployments",
            "deploy",
            "apps/v1",
            "statefulsets",
            "ingresses",
            "leases",
            "endpointslices",
        ] {
            assert!(
                r.contains(needle),
                "kubectl 1.{} api-resources lacks {needle}",
                k.minor
            );
        }
        let ci = k.ok(&["cluster-info"]);
        assert!(ci.contains("is running at"), "kubectl 1.{}: {ci}", k.minor);
    }
}

#[test]
fn apply_reapply_with_strategic_merge_server_side_and_dry_run() {
    for k in Kubectl::all("apply") {
        let out = k.apply(APP, &[]);
        assert_eq!(
            out.matches("created").count(),
            3,
            "kubectl 1.{}: {out}",
            k.minor
        );
        let changed = APP
            .replace("busybox:1.35", "busybox:1.36")
            .replace("        - {name: DROP, value: \"2\"}\n", "");
        let out = k.apply(&changed, &[]);
        assert!(
            out.contains("deployment.apps/web configured"),
            "kubectl 1.{}: {out}",
            k.minor
        );
        assert!(
            out.contains("service/web unchanged"),
            "kubectl 1.{}: {out}",
            k.minor
        );
        let got = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[*].name}"]);
        assert_eq!(got, "busybox:1.36 KEEP", "kubectl 1.{}", k.minor);
        assert!(k
            .apply(&changed, &[])
            .contains("deployment.apps/web unchanged"));

        let ssa = APP
            .replace("name: web\n  labels", "name: ssa\n  labels")
            .replace("replicas: 2", "replicas: 3");
        let ssa = ssa.split("---").next().unwrap_or_default().to_string();
        assert!(
            k.apply(&ssa, &["--server-side"])
                .contains("serverside-applied"),
            "kubectl 1.{}",
            k.minor
        );
        assert!(k
            .apply(
                &ssa.replace("replicas: 3", "replicas: 4"),
                &["--server-side"]
            )
            .contains("serverside-applied"));
        assert_eq!(
            k.ok(&["get", "deploy", "ssa", "-o", "jsonpath={.spec.replicas}"]),
            "4"
        );

        let dry = APP.replace("name: web-config", "name: dry-config");
        k.apply(&dry, &["--dry-run=server"]);
        let err = k.fails(&["get", "configmap", "dry-config"]);
        assert!(err.contains("NotFound"), "kubectl 1.{}: {err}", k.minor);
        k.ok(&[
            "create",
            "configmap",
            "dry2",
            "--from-literal=a=b",
            "--dry-run=server",
        ]);
        assert!(k.fails(&["get", "configmap", "dry2"]).contains("NotFound"));
    }
}

#[test]
fn get_every_kind_in_every_output_and_describe() {
    let kinds = [
        "pods",
        "deployments",
        "replicasets",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "events",
        "serviceaccounts",
        "daemonsets",
        "statefulsets",
        "controllerrevisions",
        "jobs",
        "cronjobs",
        "leases",
        "ingresses",
        "endpointslices",
        "namespaces",
        "nodes",
        "ingressclasses",
    ];
    for k in Kubectl::all("get") {
        k.apply(APP, &[]);
        // Every output for the versions that must pass; the table for the others.
        let outputs: &[Option<&str>] = if matches!(k.minor, 27 | 33) {
            &[
                None,
                Some("wide"),
                Some("yaml"),
                Some("json"),
                Some("jsonpath={.items[*].metadata.name}"),
                Some("name"),
            ]
        } else {
            &[None]
        };
        for kind in kinds {
            for output in outputs.iter().copied() {
                let mut args = vec!["get", kind];
                let o;
                if let Some(out) = output {
                    o = format!("-o={out}");
                    args.push(&o);
                }
                k.ok(&args);
            }
        }
        let wide = k.ok(&["get", "deploy", "web", "-o", "wide"]);
        assert!(
            wide.contains("CONTAINERS")
                && wide.contains("busybox:1.35")
                && wide.contains("app=web"),
            "kubectl 1.{}: {wide}",
            k.minor
        );
        let svc = k.ok(&["get", "svc", "web"]);
        assert!(
            svc.contains("ClusterIP") && svc.contains("80/TCP"),
            "kubectl 1.{}: {svc}",
            k.minor
        );
        let all = k.ok(&["get", "all"]);
        assert!(
            all.contains("deployment.apps/web") && all.contains("service/web"),
            "kubectl 1.{}: {all}",
            k.minor
        );
        let d = k.ok(&["describe", "deployment", "web"]);
        assert!(
            d.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
            "kubectl 1.{}: {d}",
            k.minor
        );
        k.ok(&["describe", "service", "web"]);
        k.ok(&["describe", "configmap", "web-config"]);
    }
}

#[test]
fn label_annotate_patch_set_image_scale_and_delete() {
    for k in Kubectl::all("edit") {
        k.apply(APP, &[]);
        k.ok(&["label", "deploy", "web", "tier=front"]);
        k.ok(&["annotate", "deploy", "web", "note=hello"]);
        k.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":5}}"#,
        ]);
        k.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
        ]);
        k.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"NEW","value":"3"}]}]}}}}"#]);
        k.ok(&["set", "image", "deploy/web", "web=busybox:1.37"]);
        k.ok(&["scale", "deploy", "web", "--replicas=5"]);
        let got = k.ok(&[
            "get", "deploy", "web", "-o",
            "jsonpath={.metadata.labels.tier},{.metadata.labels.json},{.metadata.annotations.note},{.spec.minReadySeconds},{.spec.template.spec.containers[0].image},{.spec.template.spec.containers[0].env[*].name},{.spec.replicas}",
        ]);
        assert_eq!(
            got, "front,yes,hello,5,busybox:1.37,KEEP DROP NEW,5",
            "kubectl 1.{}",
            k.minor
        );
        k.ok(&["delete", "configmap", "web-config"]);
        assert!(k
            .fails(&["get", "configmap", "web-config"])
            .contains("NotFound"));
        k.ok(&["delete", "deploy", "web"]);
        assert!(k.fails(&["get", "deploy", "web"]).contains("NotFound"));
    }
}

/// Lines of a running command's stdout, as they come.
fn lines_of(mut child: std::process::Child) -> (std::process::Child, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn get_watch_sees_changes_made_by_another_client() {
    for k in Kubectl::all("watch") {
        k.ok(&["create", "configmap", "watched", "--from-literal=v=one"]);
        let single = k
            .cmd(&[
                "get",
                "configmap",
                "watched",
                "-w",
                "-o",
                "jsonpath={.data.v}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let (mut single, single_rx) = lines_of(single);
        let table = k
            .cmd(&["get", "configmaps", "-w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let (mut table, table_rx) = lines_of(table);
        assert!(
            wait_for(&single_rx, "one"),
            "kubectl 1.{}: initial state",
            k.minor
        );
        assert!(
            wait_for(&table_rx, "watched"),
            "kubectl 1.{}: initial table",
            k.minor
        );
        // Another client (kubectl of the newest version, on another replica) makes the change.
        let other = Kubectl {
            kubeconfig: cluster().kubeconfig((k.minor as usize + 1) % 3),
            ..k.clone_for_other()
        };
        other.ok(&[
            "patch",
            "configmap",
            "watched",
            "--type=merge",
            "-p",
            r#"{"data":{"v":"two"}}"#,
        ]);
        other.ok(&["create", "configmap", "arrived", "--from-literal=v=x"]);
        let saw_update = wait_for(&single_rx, "two");
        let saw_new = wait_for(&table_rx, "arrived");
        let _ = single.kill();
        let _ = table.kill();
        let _ = single.wait();
        let _ = table.wait();
        assert!(saw_update, "kubectl 1.{} get -w missed the update", k.minor);
        assert!(
            saw_new,
            "kubectl 1.{} get -w (table) missed the new object",
            k.minor
        );
    }
}

impl Kubectl {
    fn clone_for_other(&self) -> Kubectl {
        Kubectl {
            bin: self.bin.clone(),
            minor: self.minor,
            kubeconfig: self.kubeconfig.clone(),
            cache: self.cache.with_extension("other"),
            ns: self.ns.clone(),
        }
    }
}

#[test]
fn create_subcommands_and_namespace_deletion() {
    for k in Kubectl::all("create") {
        k.ok(&[
            "create",
            "deployment",
            "made",
            "--image=busybox:1.36",
            "--replicas=2",
            "--port=8080",
        ]);
        k.ok(&["create", "configmap", "made", "--from-literal=a=b"]);
        k.ok(&["create", "secret", "generic", "made", "--from-literal=pw=x"]);
        k.ok(&["create", "service", "clusterip", "made", "--tcp=80:8080"]);
        k.ok(&["create", "job", "made", "--image=busybox", "--", "true"]);
        let got = k.ok(&[
            "get",
            "deploy",
            "made",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort}",
        ]);
        assert_eq!(got, "2 8080", "kubectl 1.{}", k.minor);
        let doomed = format!("doomed-{}", k.minor);
        k.ok(&["create", "namespace", &doomed]);
        k.ok(&[
            "create",
            "configmap",
            "inside",
            "--from-literal=a=b",
            "-n",
            &doomed,
        ]);
        k.ok(&["delete", "namespace", &doomed, "--timeout=30s"]);
        let err = k.fails(&["get", "namespace", &doomed]);
        assert!(err.contains("NotFound"), "kubectl 1.{}: {err}", k.minor);
        let err = k.fails(&["get", "configmap", "inside", "-n", &doomed]);
        assert!(
            err.contains("NotFound"),
            "kubectl 1.{}: the namespace's objects remain: {err}",
            k.minor
        );
    }
}

/// Every kubectl at once, each in its own thread (the scenarios wait on the cluster, not
/// on the CPU).
fn each_kubectl(scenario: &str, f: impl Fn(&Kubectl) + Sync) {
    let all = Kubectl::all(scenario);
    std::thread::scope(|s| {
        for k in &all {
            let f = &f;
            s.spawn(move || f(k));
        }
    });
}

#[test]
fn rollout_status_wait_and_drain() {
    nodes();
    each_kubectl("roll", |k| {
        let drain_node = format!("drain-{}", k.minor);
        let manifest = format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: 2
  selector:
    matchLabels: {{app: roll}}
  template:
    metadata:
      labels: {{app: roll}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {drain_node}}}
      tolerations: [{{key: drain, operator: Exists, effect: NoSchedule}}]
      containers:
      - name: c
        image: busybox:1.36
"#
        );
        k.apply(&manifest, &[]);
        let out = k.ok(&["rollout", "status", "deployment/roll", "--timeout=90s"]);
        assert!(
            out.contains("successfully rolled out"),
            "kubectl 1.{}: {out}",
            k.minor
        );
        k.ok(&["set", "image", "deployment/roll", "c=busybox:1.37"]);
        let out = k.ok(&["rollout", "status", "deployment/roll", "--timeout=90s"]);
        assert!(
            out.contains("successfully rolled out"),
            "kubectl 1.{}: {out}",
            k.minor
        );
        k.ok(&[
            "wait",
            "--for=condition=Available",
            "deployment/roll",
            "--timeout=60s",
        ]);
        let history = k.ok(&["rollout", "history", "deployment/roll"]);
        assert!(history.contains('2'), "kubectl 1.{}: {history}", k.minor);
        // Drain: the node is cordoned and its pods deleted (no eviction API: plain deletes).
        let before = k.ok(&["get", "pods", "-o", "name"]);
        assert!(
            !before.trim().is_empty(),
            "kubectl 1.{}: no pods to drain",
            k.minor
        );
        let (ok, out) = k.run_env(
            &[
                "drain",
                &drain_node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=90s",
            ],
            &[],
        );
        assert!(ok, "kubectl 1.{} drain: {out}", k.minor);
        assert!(out.contains("drained"), "kubectl 1.{}: {out}", k.minor);
        let node = k.ok(&[
            "get",
            "node",
            &drain_node,
            "-o",
            "jsonpath={.spec.unschedulable}",
        ]);
        assert_eq!(node, "true", "kubectl 1.{}", k.minor);
        // The drained pods are gone (their replacements wait: the node is cordoned).
        let after = k.ok(&["get", "pods", "-o", "name"]);
        for pod in before.lines() {
            assert!(
                !after.lines().any(|p| p == pod),
                "kubectl 1.{}: {pod} still there",
                k.minor
            );
        }
        k.ok(&["uncordon", &drain_node]);
    });
}

#[test]
fn explain_diff_edit_patch_and_columns() {
    each_kubectl("more", |k| {
        k.apply(APP, &[]);
        let out = k.ok(&["explain", "deployment.spec.replicas"]);
        assert!(
            out.contains("Number of desired pods"),
            "kubectl 1.{} explain: {out}",
            k.minor
        );
        let out = k.ok(&["explain", "pods.spec.containers"]);
        assert!(
            out.contains("image"),
            "kubectl 1.{} explain: {out}",
            k.minor
        );

        // diff: nothing to show for the applied state, the change for a new one.
        let dir = cluster().dir.path();
        let same = dir.join(format!("diff-same-{}.yaml", k.ns));
        std::fs::write(&same, APP).expect("manifest");
        let (ok, out) = k.run_env(&["diff", "-f", same.to_str().expect("utf-8")], &[]);
        assert!(ok, "kubectl 1.{} diff of the live state: {out}", k.minor);
        let changed = dir.join(format!("diff-changed-{}.yaml", k.ns));
        std::fs::write(
            &changed,
            APP.replace("greeting: hello", "greeting: changed"),
        )
        .expect("manifest");
        let (ok, out) = k.run_env(&["diff", "-f", changed.to_str().expect("utf-8")], &[]);
        assert!(!ok, "kubectl 1.{} diff exits 1 on a change", k.minor);
        assert!(
            out.contains("+  greeting: changed") && out.contains("-  greeting: hello"),
            "kubectl 1.{} diff: {out}",
            k.minor
        );

        // edit through an editor that rewrites the value.
        let editor = dir.join(format!("editor-{}.sh", k.ns));
        std::fs::write(
            &editor,
            "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n",
        )
        .expect("editor");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&editor)
            .status()
            .expect("chmod");
        let editor_var = editor.to_str().expect("utf-8");
        let (ok, out) = k.run_env(
            &["edit", "configmap", "web-config"],
            &[("KUBE_EDITOR", editor_var), ("EDITOR", editor_var)],
        );
        assert!(ok, "kubectl 1.{} edit: {out}", k.minor);
        assert_eq!(
            k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.greeting}"]),
            "edited"
        );

        // label / annotate, with and without --overwrite.
        k.ok(&["label", "svc", "web", "tier=front"]);
        let err = k.fails(&["label", "svc", "web", "tier=back"]);
        assert!(
            err.contains("already has a value"),
            "kubectl 1.{}: {err}",
            k.minor
        );
        k.ok(&["label", "svc", "web", "tier=back", "--overwrite"]);
        k.ok(&["annotate", "cm", "web-config", "note=one"]);
        k.ok(&["annotate", "cm", "web-config", "note=two", "--overwrite"]);
        assert_eq!(
            k.ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.metadata.labels.tier}"
            ]),
            "back"
        );

        // patch: json, merge and strategic, on several kinds.
        k.ok(&[
            "patch",
            "cm",
            "web-config",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"1"}]"#,
        ]);
        k.ok(&[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"annotations":{"m":"2"}}}"#,
        ]);
        k.ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"ports":[{"port":80,"name":"http"}]}}"#,
        ]);
        k.ok(&["patch", "deploy", "web", "--type=strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"S","value":"3"}]}]}}}}"#]);
        let got = [
            k.ok(&["get", "cm", "web-config", "-o", "jsonpath={.data.j}"]),
            k.ok(&[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.m},{.spec.ports[0].name}",
            ]),
            k.ok(&[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env[*].name}",
            ]),
        ];
        assert_eq!(got, ["1", "2,http", "KEEP DROP S"], "kubectl 1.{}", k.minor);

        let cols = k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image",
        ]);
        assert!(
            cols.contains("NAME") && cols.contains("web") && cols.contains("busybox:1.35"),
            "kubectl 1.{}: {cols}",
            k.minor
        );

        // api-resources with upstream's verbs; auth can-i.
        let wide = k.ok(&["api-resources", "-o", "wide"]);
        // Verbs print as `[a b]` up to 1.28 and `a,b` since.
        let verbs = |name: &str| {
            wide.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_default()
                .replace(['[', ']', ','], " ")
        };
        let review = verbs("selfsubjectaccessreviews");
        assert!(
            review.contains(" create ") && !review.contains(" get "),
            "kubectl 1.{}: {wide}",
            k.minor
        );
        assert!(
            verbs("deployments")
                .contains("create delete deletecollection get list patch update watch"),
            "kubectl 1.{}: {wide}",
            k.minor
        );
        assert_eq!(
            k.ok(&["auth", "can-i", "create", "deployments"]).trim(),
            "yes"
        );
        let (allowed, out) = k.run_env(
            &["auth", "can-i", "create", "deployments", "--as=nobody"],
            &[],
        );
        assert!(
            !allowed && out.trim() == "no",
            "kubectl 1.{}: {out}",
            k.minor
        );
    });
}
