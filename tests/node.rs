//! The node agent against runc, as root: every test runs a single-node `skiff server` inside
//! its own network namespace (tests/common/node_host.rs) with a local registry holding the
//! busybox image built by scripts/build-busybox-image.sh.

#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use node_host::{phase, root_or_skip, wait_pod, NodeHost, IMAGE};
use serde_json::json;

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec,
    }))
    .expect("pod")
}

/// hostPath volumes need a namespace whose Pod Security level is privileged (the default,
/// baseline, refuses them).
async fn allow_host_paths(client: kube::Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client);
    let label =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    api.patch(ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label the namespace privileged");
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status.as_ref()?.pod_ip.clone()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container(p, name)?.state?.waiting?.reason
}

#[tokio::test]
async fn pods_pull_from_the_registry_share_volumes_and_localhost() {
    if !root_or_skip("pods_pull_from_the_registry_share_volumes_and_localhost") {
        return;
    }
    let host = NodeHost::start("");
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let spec = json!({
        "containers": [
            {
                "name": "writer",
                "image": IMAGE,
                "command": ["sh", "-c", "echo hello-from-writer > /data/index.html; until wget -qO /data/via-localhost.html http://localhost:8080/index.html; do sleep 0.2; done; exec sleep 3600"],
                "volumeMounts": [{ "name": "shared", "mountPath": "/data" }],
            },
            {
                "name": "server",
                "image": IMAGE,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
                "volumeMounts": [{ "name": "shared", "mountPath": "/data" }],
            },
        ],
        "volumes": [{ "name": "shared", "emptyDir": {} }],
    });
    api.create(&PostParams::default(), &pod("web", spec))
        .await
        .expect("create");
    let ip = wait_pod(&api, "web", 60, |p| {
        (phase(p) == "Running" && ready(p))
            .then(|| pod_ip(p))
            .flatten()
    })
    .await;
    let p = api.get("web").await.expect("get");
    let st = container(&p, "server").expect("status");
    assert!(
        st.image_id.contains("@sha256:"),
        "imageID {:?}",
        st.image_id
    );
    assert!(st.container_id.is_some_and(|c| c.starts_with("runc://")));
    // Node -> pod over the bridge.
    let (code, body) = host
        .http_get(format!("{ip}:8080"), "/index.html")
        .expect("HTTP to the pod");
    assert_eq!((code, body.trim()), (200, "hello-from-writer"));
    // Container -> container over localhost (the shared network namespace).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = host.http_get(format!("{ip}:8080"), "/via-localhost.html") {
            assert_eq!(body.trim(), "hello-from-writer");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writer never reached the server over localhost"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A missing image: ErrImagePull with the registry's message, then ImagePullBackOff.
    let missing =
        json!({ "containers": [{ "name": "c", "image": "127.0.0.1:5000/nothing-here:v1" }] });
    api.create(&PostParams::default(), &pod("missing", missing))
        .await
        .expect("create");
    let msg = wait_pod(&api, "missing", 30, |p| {
        let st = container(p, "c")?.state?.waiting?;
        (st.reason.as_deref() == Some("ErrImagePull")).then(|| st.message.unwrap_or_default())
    })
    .await;
    assert!(
        msg.to_lowercase().contains("unknown") || msg.contains("not found"),
        "message: {msg}"
    );
    wait_pod(&api, "missing", 30, |p| {
        (waiting_reason(p, "c").as_deref() == Some("ImagePullBackOff")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn crash_loops_back_off_and_probes_restart_or_unready() {
    if !root_or_skip("crash_loops_back_off_and_probes_restart_or_unready") {
        return;
    }
    let host = NodeHost::start("");
    allow_host_paths(host.client(), "default").await;
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let gate = host.dir.path().join("gate");
    std::fs::create_dir_all(&gate).expect("gate dir");
    std::fs::write(gate.join("ready"), "").expect("gate file");
    let crash = json!({ "containers": [{ "name": "c", "image": IMAGE, "command": ["sh", "-c", "echo crashing; exit 1"] }] });
    let liveness = json!({ "containers": [{
        "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
        "livenessProbe": { "tcpSocket": { "port": 9999 }, "periodSeconds": 1, "failureThreshold": 1 },
    }], "terminationGracePeriodSeconds": 1 });
    let readiness = json!({
        "containers": [{
            "name": "c", "image": IMAGE, "command": ["sleep", "3600"],
            "readinessProbe": { "exec": { "command": ["test", "-f", "/gate/ready"] }, "periodSeconds": 1, "failureThreshold": 1 },
            "volumeMounts": [{ "name": "gate", "mountPath": "/gate" }],
        }],
        "volumes": [{ "name": "gate", "hostPath": { "path": gate.display().to_string() } }],
    });
    for (name, spec) in [
        ("crash", crash),
        ("liveness", liveness),
        ("readiness", readiness),
    ] {
        api.create(&PostParams::default(), &pod(name, spec))
            .await
            .expect("create");
    }
    // Crash loop: restarts grow, with CrashLoopBackOff between them.
    wait_pod(&api, "crash", 60, |p| {
        let st = container(p, "c")?;
        let backoff = st.state?.waiting?.reason.as_deref() == Some("CrashLoopBackOff");
        (backoff && st.restart_count >= 1 && st.last_state?.terminated?.exit_code == 1)
            .then_some(())
    })
    .await;
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(host.kubeconfig())
        .args(["get", "pod", "crash"])
        .output()
        .expect("kubectl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CrashLoopBackOff"));
    // Liveness failures restart the container.
    wait_pod(&api, "liveness", 60, |p| {
        (container(p, "c")?.restart_count >= 2).then_some(())
    })
    .await;
    // Readiness: Ready while the file exists, not Ready (and not restarted) once it is gone.
    wait_pod(&api, "readiness", 30, |p| ready(p).then_some(())).await;
    std::fs::remove_file(gate.join("ready")).expect("remove gate");
    wait_pod(&api, "readiness", 30, |p| (!ready(p)).then_some(())).await;
    let p = api.get("readiness").await.expect("get");
    let st = container(&p, "c").expect("status");
    assert_eq!(st.restart_count, 0);
    assert!(st.state.and_then(|s| s.running).is_some(), "still running");
}

#[tokio::test]
async fn deletion_sends_sigterm_then_sigkill_after_the_grace_period() {
    if !root_or_skip("deletion_sends_sigterm_then_sigkill_after_the_grace_period") {
        return;
    }
    let host = NodeHost::start("");
    allow_host_paths(host.client(), "default").await;
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let out = host.dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let spec = json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [{
            "name": "c", "image": IMAGE,
            "command": ["sh", "-c", "trap 'echo TERM >> /out/log; sleep 30; echo survived >> /out/log' TERM; echo started >> /out/log; while true; do sleep 0.1; done"],
            "volumeMounts": [{ "name": "out", "mountPath": "/out" }],
        }],
        "volumes": [{ "name": "out", "hostPath": { "path": out.display().to_string() } }],
    });
    api.create(&PostParams::default(), &pod("term", spec))
        .await
        .expect("create");
    wait_pod(&api, "term", 60, |p| (phase(p) == "Running").then_some(())).await;
    let log = out.join("log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("started")
    {
        assert!(Instant::now() < deadline, "container never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = Instant::now();
    api.delete("term", &DeleteParams::default())
        .await
        .expect("delete");
    // Marked for deletion first; gone once the node agent has stopped everything.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt("term").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "pod not removed\n{}", host.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "removed after {took:?}, before the grace period"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["started", "TERM"],
        "SIGTERM first, SIGKILL after the grace period"
    );
}

#[tokio::test]
async fn a_restarted_agent_adopts_running_containers() {
    if !root_or_skip("a_restarted_agent_adopts_running_containers") {
        return;
    }
    let mut host = NodeHost::start("");
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let spec =
        json!({ "containers": [{ "name": "c", "image": IMAGE, "command": ["sleep", "3600"] }] });
    api.create(&PostParams::default(), &pod("keep", spec))
        .await
        .expect("create");
    let id = wait_pod(&api, "keep", 60, |p| {
        let st = container(p, "c")?;
        st.ready.then_some(st.container_id?)
    })
    .await;
    let runc_id = id.trim_start_matches("runc://").to_string();
    let pods_dir = host.state_dir().join("pods");
    let pid_file = |id: &str| {
        let pods = pods_dir.clone();
        std::fs::read_dir(pods)
            .expect("pods")
            .flatten()
            .map(|e| e.path().join("containers").join(id).join("pid"))
            .find(|p| p.exists())
            .expect("pid file")
    };
    let pid = std::fs::read_to_string(pid_file(&runc_id)).expect("pid");
    host.kill_server();
    assert!(
        std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "container died with the agent"
    );
    host.start_server();
    // Wait until the new agent has reported (its status writes go through the new process).
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    wait_pod(&api, "keep", 30, |p| ready(p).then_some(())).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host
        .log()
        .matches("adopted running container")
        .any(|_| true)
    {
        assert!(
            Instant::now() < deadline,
            "no adoption logged\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = api.get("keep").await.expect("get");
    let st = container(&p, "c").expect("status");
    assert_eq!(st.container_id.as_deref(), Some(id.as_str()));
    assert_eq!(st.restart_count, 0);
    assert_eq!(
        std::fs::read_to_string(pid_file(&runc_id)).expect("pid"),
        pid
    );
    assert!(std::path::Path::new(&format!("/proc/{}", pid.trim())).exists());
}

#[tokio::test]
async fn a_deployment_created_with_kubectl_becomes_ready() {
    if !root_or_skip("a_deployment_created_with_kubectl_becomes_ready") {
        return;
    }
    let host = NodeHost::start("");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(host.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kubectl(&[
        "create",
        "deployment",
        "web",
        "--image",
        IMAGE,
        "--replicas",
        "3",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
    ]);
    kubectl(&["rollout", "status", "deployment/web", "--timeout", "90s"]);
    let out = kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(out.trim(), "3");
    // Each replica answers on its own pod IP.
    let ips = kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 3);
    // No readiness probe: Ready can come a moment before httpd listens.
    for ip in ips {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match host.http_get(format!("{ip}:8080"), "/") {
                Some((code, _)) => {
                    assert!(code == 404 || code == 200, "replica {ip} answered {code}");
                    break;
                }
                None => assert!(Instant::now() < deadline, "replica {ip} does not answer"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The node's metrics count the pods and report container usage from cgroups.
    let (_, metrics) = host.metrics().expect("metrics");
    assert!(
        metrics.lines().any(|l| l == "kubelet_running_pods 3"),
        "{metrics}"
    );
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("container_memory_working_set_bytes{") && l.contains("pod=\"web-")));
    assert!(metrics.contains("kubelet_pod_start_duration_seconds_count"));
}

const KUBECTL_127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn kubectl(bin: &str, host: &NodeHost, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(host.kubeconfig())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

#[tokio::test]
async fn kubectl_logs_and_exec_reach_the_containers() {
    if !root_or_skip("kubectl_logs_and_exec_reach_the_containers") {
        return;
    }
    let host = NodeHost::start("");
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let looping = json!({ "containers": [{ "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "echo hello-from-$HOSTNAME; echo bye; sleep 1; exit 1"] }] });
    let ticking = json!({ "restartPolicy": "Never", "containers": [{ "name": "c", "image": IMAGE,
        "command": ["sh", "-c", "sleep 1; for i in 1 2 3; do echo tick-$i; sleep 0.3; done"] }] });
    let shell =
        json!({ "containers": [{ "name": "c", "image": IMAGE, "command": ["sleep", "3600"] }] });
    for (name, spec) in [("looping", looping), ("ticking", ticking), ("shell", shell)] {
        api.create(&PostParams::default(), &pod(name, spec))
            .await
            .expect("create");
    }
    // Follow a running container until it exits.
    wait_pod(&api, "ticking", 60, |p| {
        (phase(p) == "Running").then_some(())
    })
    .await;
    for bin in [KUBECTL_127, KUBECTL_133] {
        if bin == KUBECTL_133 {
            // The second follow starts after the container exited: the whole log, then EOF.
            wait_pod(&api, "ticking", 30, |p| {
                (phase(p) == "Succeeded").then_some(())
            })
            .await;
        }
        let out = kubectl(bin, &host, &["logs", "-f", "ticking"], None);
        assert!(
            out.status.success(),
            "{bin} logs -f: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "tick-1\ntick-2\ntick-3\n",
            "{bin}"
        );
    }
    // Current and previous container's logs after a restart.
    wait_pod(&api, "looping", 60, |p| {
        (container(p, "c")?.restart_count >= 1).then_some(())
    })
    .await;
    for bin in [KUBECTL_127, KUBECTL_133] {
        let out = kubectl(bin, &host, &["logs", "--previous", "looping"], None);
        assert!(
            out.status.success(),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello-from-looping\nbye\n"
        );
        let out = kubectl(bin, &host, &["logs", "looping", "-c", "c"], None);
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("hello-from-looping"),
            "{bin}"
        );
    }
    // Exec over WebSocket (kubectl 1.33): output, stdin, exit code.
    wait_pod(&api, "shell", 60, |p| ready(p).then_some(())).await;
    let out = kubectl(
        KUBECTL_133,
        &host,
        &["exec", "shell", "--", "cat", "/etc/hostname"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shell");
    let out = kubectl(
        KUBECTL_133,
        &host,
        &["exec", "-i", "shell", "--", "sh", "-c", "cat; exit 3"],
        Some("piped through\n"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped through\n");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn init_containers_configmaps_secrets_and_env_reach_the_app() {
    if !root_or_skip("init_containers_configmaps_secrets_and_env_reach_the_app") {
        return;
    }
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let host = NodeHost::start("");
    let client = host.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "settings" }, "data": { "greeting": "hi", "page.html": "from-configmap" } })).expect("cm");
    let secret: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "creds" }, "stringData": { "password": "s3cret" } }),
    )
    .expect("secret");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let api: Api<Pod> = Api::namespaced(client, "default");
    let spec = json!({
        "initContainers": [
            { "name": "first", "image": IMAGE, "command": ["sh", "-c", "echo first > /work/order"], "volumeMounts": [{ "name": "work", "mountPath": "/work" }] },
            { "name": "second", "image": IMAGE, "command": ["sh", "-c", "echo second >> /work/order"], "volumeMounts": [{ "name": "work", "mountPath": "/work" }] },
        ],
        "containers": [{
            "name": "app", "image": IMAGE,
            "command": ["sh", "-c", "echo \"$GREETING $PASSWORD $POD_NAME $POD_IP $NODE $0 $1\" > /work/env; cp /config/page.html /work/; cat /secret/password > /work/secret; exec httpd -f -p 8080 -h /work"],
            "args": ["$(GREETING)", "$(MISSING)"],
            "workingDir": "/work",
            "env": [
                { "name": "GREETING", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "greeting" } } },
                { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
            ],
            "resources": { "limits": { "memory": "64Mi", "cpu": "500m" } },
            "volumeMounts": [
                { "name": "work", "mountPath": "/work" },
                { "name": "config", "mountPath": "/config" },
                { "name": "secret", "mountPath": "/secret", "readOnly": true },
            ],
        }],
        "volumes": [
            { "name": "work", "emptyDir": {} },
            { "name": "config", "configMap": { "name": "settings" } },
            { "name": "secret", "secret": { "secretName": "creds" } },
        ],
    });
    api.create(&PostParams::default(), &pod("init", spec))
        .await
        .expect("create");
    let ip = wait_pod(&api, "init", 60, |p| ready(p).then(|| pod_ip(p)).flatten()).await;
    let get = |path: &'static str| host.http_get(format!("{ip}:8080"), path).map(|(_, b)| b);
    assert_eq!(
        get("/order").as_deref(),
        Some("first\nsecond\n"),
        "init containers ran in order"
    );
    assert_eq!(
        get("/env").as_deref(),
        Some(format!("hi s3cret init {ip} n1 hi $(MISSING)\n").as_str())
    );
    assert_eq!(get("/page.html").as_deref(), Some("from-configmap"));
    assert_eq!(get("/secret").as_deref(), Some("s3cret"));
    let p = api.get("init").await.expect("get");
    let inits = p
        .status
        .and_then(|s| s.init_container_statuses)
        .expect("init statuses");
    assert!(inits.iter().all(|s| s
        .state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0 && t.reason.as_deref() == Some("Completed"))));
    // The memory limit is the container's cgroup limit.
    let (_, metrics) = host.metrics().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("container_cpu_usage_seconds_total{")
                && l.contains("pod=\"init\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_agent_only_node_joins_and_runs_pods() {
    if !root_or_skip("an_agent_only_node_joins_and_runs_pods") {
        return;
    }
    use k8s_openapi::api::core::v1::Node;
    let mut host = NodeHost::start("");
    host.start_agent("n2", 1);
    let nodes: Api<Node> = Api::all(host.client());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = nodes
            .get_opt("n2")
            .await
            .expect("get node")
            .is_some_and(|n| {
                let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
                let conds = n.status.and_then(|s| s.conditions).unwrap_or_default();
                cidr.as_deref() == Some("10.244.1.0/24")
                    && conds
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "agent node n2 not Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let spec = json!({
        "nodeSelector": { "kubernetes.io/hostname": "n2" },
        "containers": [{ "name": "c", "image": IMAGE, "command": ["sh", "-c", "echo on-agent; exec httpd -f -p 8080 -h /etc"] }],
    });
    api.create(&PostParams::default(), &pod("remote", spec))
        .await
        .expect("create");
    let ip = wait_pod(&api, "remote", 60, |p| {
        ready(p).then(|| pod_ip(p)).flatten()
    })
    .await;
    assert!(ip.starts_with("10.244.1."), "pod IP {ip} from n2's subnet");
    let p = api.get("remote").await.expect("get");
    assert_eq!(p.spec.and_then(|s| s.node_name).as_deref(), Some("n2"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while host
        .http_get(format!("{ip}:8080"), "/hostname")
        .map(|(_, b)| b)
        .as_deref()
        != Some("remote\n")
    {
        assert!(Instant::now() < deadline, "pod on n2 does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Logs come from n2's kubelet port through the API server.
    let out = kubectl(KUBECTL_133, &host, &["logs", "remote"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "on-agent\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
