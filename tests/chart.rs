//! `skiff chart`: the repository's charts rendered through the binary, its one-line errors,
//! and install / upgrade / uninstall / list against a real `skiff server` (node agent off,
//! so nothing runs: the test checks the objects and the release record in the API).

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde::Deserialize;
use serde_json::{json, Value};
use servers::{Servers, BIN};

fn chart_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts")
        .join(name)
}

fn skiff(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run skiff")
}

/// `skiff ARGS` with a kubeconfig (the cluster's CA and the admin token).
fn skiff_as_admin(args: &[&str], kubeconfig: &std::path::Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run skiff")
}

fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A failure: exit code 1 and exactly one line on stderr, `skiff: error: ...`.
fn one_line_error(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", out(o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{}", out(o));
    assert!(err.starts_with("skiff: error: "), "{}", out(o));
    err
}

/// `skiff chart template` on a chart; the parsed documents.
fn template(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["chart", "template", dir];
    args.extend_from_slice(extra);
    let o = skiff(&args);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<&str> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

fn env_of(container: &Value, name: &str) -> Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn echo_renders_deployment_and_service() {
    let docs = template(&chart_dir("echo"), &[]);
    // Helm's install order: the Service before the Deployment.
    assert_eq!(kinds(&docs), ["Service", "Deployment"]);
    let d = find(&docs, "Deployment");
    assert_eq!(d["metadata"]["name"], "echo");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "echo"}));
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["app"], "echo");
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"})
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:latest");
    assert_eq!(
        env_of(c, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_of(c, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let script = c["args"][0].as_str().expect("script");
    assert!(script.contains("/www/index.html") && script.contains("exec httpd -f -p 8080 -h /www"));
    assert!(script.contains("# TYPE echo_info gauge"), "{script}");
    let s = find(&docs, "Service");
    assert_eq!(s["metadata"]["name"], "echo");
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["selector"], json!({"app": "echo"}));
    assert_eq!(s["spec"]["ports"][0]["port"], 80);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
}

#[test]
fn values_files_and_set_override_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = dir.path().join("one.yaml");
    let two = dir.path().join("two.yaml");
    std::fs::write(&one, "replicas: 2\nnameOverride: web\nimage: one\n").expect("write");
    std::fs::write(&two, "replicas: 4\n").expect("write");
    let docs = template(
        &chart_dir("echo"),
        &[
            "-f",
            one.to_str().expect("path"),
            "--values",
            two.to_str().expect("path"),
            "--set",
            "image=10.90.0.1:5000/busybox:latest",
            "--name",
            "rel",
        ],
    );
    let d = find(&docs, "Deployment");
    assert_eq!(d["spec"]["replicas"], 4);
    // The name comes from the _helpers.tpl define through include, in every object.
    assert_eq!(d["metadata"]["name"], "web");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(find(&docs, "Service")["spec"]["selector"]["app"], "web");
    assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/instance"], "rel");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "10.90.0.1:5000/busybox:latest"
    );
    let docs = template(
        &chart_dir("echo"),
        &["--set", "replicas=5,service.port=8000"],
    );
    assert_eq!(find(&docs, "Deployment")["spec"]["replicas"], 5);
    assert_eq!(find(&docs, "Service")["spec"]["ports"][0]["port"], 8000);
}

#[test]
fn iperf_renders_sink_service_and_client_job_on_another_node() {
    let docs = template(
        &chart_dir("iperf"),
        &[
            "--set",
            "image=reg/busybox:1",
            "--set",
            "client.megabytes=64",
        ],
    );
    assert_eq!(kinds(&docs), ["Service", "Deployment", "Job"]);
    let server = find(&docs, "Deployment");
    assert_eq!(server["spec"]["replicas"], 1);
    let sink = &server["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(sink["image"], "reg/busybox:1");
    assert_eq!(sink["command"][0], "nc");
    assert_eq!(find(&docs, "Service")["spec"]["ports"][0]["port"], 5201);
    let job = find(&docs, "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let term =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        term["labelSelector"]["matchLabels"],
        json!({"app": "iperf-server"})
    );
    let client = &pod["containers"][0];
    assert_eq!(env_of(client, "MEGABYTES")["value"], "64");
    assert_eq!(env_of(client, "SERVER")["value"], "iperf-server");
    let docs = template(&chart_dir("iperf"), &["--set", "client.enabled=false"]);
    assert_eq!(kinds(&docs), ["Service", "Deployment"]);
    let docs = template(
        &chart_dir("iperf"),
        &["--set", "client.antiAffinity=preferred"],
    );
    let aff = &find(&docs, "Job")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert_eq!(
        aff["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        100
    );
}

#[test]
fn load_renders_a_bounded_job_against_the_target() {
    let docs = template(&chart_dir("load"), &[]);
    assert_eq!(kinds(&docs), ["Job"]);
    let c = &find(&docs, "Job")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_of(c, "URL")["value"], "http://echo:80/");
    assert_eq!(env_of(c, "REQUESTS")["value"], "100");
    let docs = template(
        &chart_dir("load"),
        &["--set", "target=web,port=8080,requests=7,parallelism=2"],
    );
    let job = find(&docs, "Job");
    assert_eq!(job["spec"]["parallelism"], 2);
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_of(c, "URL")["value"], "http://web:8080/");
    assert_eq!(env_of(c, "REQUESTS")["value"], "7");
}

/// A small chart in a temporary directory: `files` are (path under the chart, text).
fn temp_chart(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

const CHART_YAML: &str = "apiVersion: v2\nname: small\nversion: 0.1.0\nappVersion: \"3\"\n";

#[test]
fn errors_are_one_line_and_exit_1() {
    let echo = chart_dir("echo");
    let echo = echo.to_str().expect("path");
    let e = one_line_error(&skiff(&["chart", "template", echo, "--set", "replicas"]));
    assert!(e.contains("has no value"), "{e}");
    let e = one_line_error(&skiff(&["chart", "template", echo, "--set", "a[x]=1"]));
    assert!(e.contains("--set"), "{e}");
    let e = one_line_error(&skiff(&["chart", "template", "/nonexistent/chart"]));
    assert!(e.contains("Chart.yaml is missing"), "{e}");
    let e = one_line_error(&skiff(&[
        "chart",
        "template",
        echo,
        "-f",
        "/nonexistent.yaml",
    ]));
    assert!(e.contains("values file"), "{e}");
    let e = one_line_error(&skiff(&["chart", "template", echo, "--set", "image="]));
    assert!(e.contains("image is required"), "{e}");
    let e = one_line_error(&skiff(&["chart", "template", echo, "--name", "Bad_Name"]));
    assert!(e.contains("invalid release name"), "{e}");

    let bad = temp_chart(&[
        ("Chart.yaml", CHART_YAML),
        (
            "templates/ok.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        ),
        ("templates/broken.yaml", "a: {{ .Values.x\n"),
    ]);
    let e = one_line_error(&skiff(&[
        "chart",
        "template",
        bad.path().to_str().expect("path"),
    ]));
    assert!(
        e.contains("parse error") && e.contains("small/templates/broken.yaml"),
        "{e}"
    );

    let no_kind = temp_chart(&[
        ("Chart.yaml", CHART_YAML),
        ("templates/x.yaml", "apiVersion: v1\nmetadata: {name: a}\n"),
    ]);
    let e = one_line_error(&skiff(&[
        "chart",
        "template",
        no_kind.path().to_str().expect("path"),
    ]));
    assert!(
        e.contains("small/templates/x.yaml") && e.contains("no kind"),
        "{e}"
    );

    let no_version = temp_chart(&[("Chart.yaml", "apiVersion: v2\nname: x\n")]);
    let e = one_line_error(&skiff(&[
        "chart",
        "template",
        no_version.path().to_str().expect("path"),
    ]));
    assert!(e.contains("version"), "{e}");

    // No server reachable: still one line.
    let e = one_line_error(&skiff(&[
        "chart",
        "install",
        "x",
        echo,
        "--server",
        "http://127.0.0.1:1",
    ]));
    assert!(e.contains("release x"), "{e}");
}

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    CLUSTER.get_or_init(|| Servers::start(1, ""))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// The release record's labels and parsed `release.json`, if it exists.
async fn record(client: &Client, ns: &str, name: &str) -> Option<(Value, Value)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(&format!("skiff-release-{name}"))
        .await
        .expect("get record")?;
    let labels = serde_json::to_value(cm.metadata.labels).expect("labels");
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("release.json"))
        .expect("release.json");
    Some((labels, serde_json::from_str(text).expect("release json")))
}

#[test]
fn install_upgrade_uninstall_echo() {
    let servers = cluster();
    let url = servers.url(0);
    let rt = runtime();
    // The client's worker task is spawned on this runtime.
    let _in_rt = rt.enter();
    let client = servers.client(0);
    let ns = "chart-echo";
    rt.block_on(namespace(&client, ns));
    let echo = chart_dir("echo");
    let echo = echo.to_str().expect("path");
    let base = ["--server", url.as_str(), "-n", ns];
    let kubeconfig = servers.kubeconfig(0);
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["chart"];
        all.extend_from_slice(args);
        all.extend_from_slice(&base);
        skiff_as_admin(&all, &kubeconfig)
    };

    let o = run(&["install", "echo", echo, "--set", "image=busybox:1.36"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("STATUS: deployed") && text.contains("REVISION: 1"),
        "{text}"
    );
    assert!(text.contains("NOTES:"), "{text}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let d = rt
        .block_on(deployments.get("echo"))
        .expect("deployment echo");
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let image = spec.template.spec.as_ref().expect("pod spec").containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("busybox:1.36"));
    let ann = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("skiff.io/release-name").map(String::as_str),
        Some("echo")
    );
    rt.block_on(services.get("echo")).expect("service echo");

    let (labels, rel) = rt.block_on(record(&client, ns, "echo")).expect("record");
    assert_eq!(
        labels,
        json!({"owner": "skiff", "name": "echo", "version": "1", "status": "deployed"})
    );
    assert_eq!(rel["chart"], "echo");
    assert_eq!(rel["chartVersion"], "0.1.0");
    assert_eq!(rel["values"], json!({"image": "busybox:1.36"}));
    assert_eq!(
        rel["objects"],
        json!([
            {"apiVersion": "v1", "kind": "Service", "namespace": ns, "name": "echo"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "echo"}
        ])
    );

    // The name is taken.
    let e = one_line_error(&run(&["install", "echo", echo]));
    assert!(e.contains("still in use"), "{e}");

    let o = run(&["list"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains(ns) && row.contains("deployed") && row.contains("echo-0.1.0"),
        "{text}"
    );

    let o = run(&["upgrade", "echo", echo, "--set", "replicas=5"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("REVISION: 2"),
        "{}",
        out(&o)
    );
    let d = rt
        .block_on(deployments.get("echo"))
        .expect("deployment echo");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(5));
    // Upgrade values replace the previous ones (Helm without --reuse-values): the image
    // is the chart's default again.
    let image = d
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("busybox:latest"));
    let (labels, _) = rt.block_on(record(&client, ns, "echo")).expect("record");
    assert_eq!(labels["version"], "2");

    let o = run(&["uninstall", "echo"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(rt
        .block_on(deployments.get_opt("echo"))
        .expect("get")
        .is_none());
    assert!(rt
        .block_on(services.get_opt("echo"))
        .expect("get")
        .is_none());
    assert!(rt.block_on(record(&client, ns, "echo")).is_none());
    let e = one_line_error(&run(&["uninstall", "echo"]));
    assert!(e.contains("not found"), "{e}");
    let e = one_line_error(&run(&["upgrade", "echo", echo]));
    assert!(e.contains("not found"), "{e}");
    let o = run(&["list"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("echo "),
        "{}",
        out(&o)
    );
}

#[test]
fn upgrade_deletes_what_the_chart_no_longer_renders() {
    let servers = cluster();
    let rt = runtime();
    // The client's worker task is spawned on this runtime.
    let _in_rt = rt.enter();
    let client = servers.client(0);
    let ns = "chart-prune";
    rt.block_on(namespace(&client, ns));
    let chart = temp_chart(&[
        ("Chart.yaml", CHART_YAML),
        ("templates/_names.tpl", "{{ define \"small.name\" }}{{ .Release.Name }}-{{ .Chart.Name }}{{ end }}"),
        (
            "templates/a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"small.name\" . }}-a\n  labels:\n    keep: \"yes\"\n    {{- if .Values.extraLabel }}\n    extra: \"yes\"\n    {{- end }}\ndata:\n  rev: {{ .Release.Revision | quote }}\n",
        ),
        (
            "templates/b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ include \"small.name\" . }}-b\n",
        ),
    ]);
    let dir = chart.path().to_str().expect("path").to_string();
    // Through the kubeconfig this time, as kubectl users do.
    let kubeconfig = servers.kubeconfig(0);
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("chart")
            .args(args)
            .args(["--namespace", ns])
            .env_remove("RUST_LOG")
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("run skiff")
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);

    // An object of the same name made by hand is not taken over.
    let squatter: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "p-small-b"}})).expect("cm");
    rt.block_on(cms.create(&PostParams::default(), &squatter))
        .expect("create");
    let e = one_line_error(&run(&["install", "p", &dir]));
    assert!(e.contains("not managed by release"), "{e}");
    let o = run(&["uninstall", "p"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(rt
        .block_on(cms.get_opt("p-small-a"))
        .expect("get")
        .is_none());
    rt.block_on(cms.delete("p-small-b", &Default::default()))
        .expect("delete");

    let o = run(&[
        "upgrade",
        "--install",
        "p",
        &dir,
        "--set",
        "extraLabel=true",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let a = rt.block_on(cms.get("p-small-a")).expect("a");
    assert_eq!(
        a.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("extra"))
            .map(String::as_str),
        Some("yes")
    );
    rt.block_on(cms.get("p-small-b")).expect("b");

    std::fs::remove_file(chart.path().join("templates/b.yaml")).expect("rm b");
    let o = run(&["upgrade", "p", &dir]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        rt.block_on(cms.get_opt("p-small-b"))
            .expect("get")
            .is_none(),
        "b kept"
    );
    let a = rt.block_on(cms.get("p-small-a")).expect("a");
    let labels = a.metadata.labels.clone().unwrap_or_default();
    // The label the new revision no longer renders is removed from the live object.
    assert_eq!(labels.get("keep").map(String::as_str), Some("yes"));
    assert!(!labels.contains_key("extra"), "{labels:?}");
    assert_eq!(
        a.data
            .as_ref()
            .and_then(|d| d.get("rev"))
            .map(String::as_str),
        Some("2")
    );
    let (_, rel) = rt.block_on(record(&client, ns, "p")).expect("record");
    assert_eq!(rel["objects"].as_array().map(Vec::len), Some(1));

    let o = run(&["uninstall", "p"]);
    assert!(o.status.success(), "{}", out(&o));
    let left = rt
        .block_on(cms.list(&ListParams::default()))
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("p-") || n.contains("release"))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "{left:?}");
}
