//! Pod Security Admission against a real server and kubectl: the attack of the security
//! review (a user who may create pods mounts the host's `/` on a server node chosen with
//! `nodeName`) is refused by the cluster's default, baseline; namespace labels tighten or
//! loosen it, with upstream's messages and warnings; the admission configuration exempts.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::time::{Duration, Instant};

use servers::Servers;

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

fn ok(s: &Servers, args: &[&str]) -> String {
    let (good, out) = s.kubectl(args);
    assert!(good, "kubectl {args:?}: {out}");
    out
}

/// `kubectl apply -f -` of `manifest` with extra args: (succeeded, output).
fn apply(s: &Servers, manifest: &str, extra: &[&str]) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig(0))
        .args(["apply", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const HOST_ROOT_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: root, namespace: team}
spec:
  nodeName: n1
  containers:
  - name: shell
    image: busybox
    command: ["cat", "/host/var/lib/skiff/pki/ca.key"]
    volumeMounts: [{name: host, mountPath: /host}]
  volumes:
  - name: host
    hostPath: {path: /}
"#;

#[test]
fn baseline_by_default_and_namespace_labels_choose_the_level() {
    let s = Servers::start(1, "");
    ok(&s, &["create", "namespace", "team"]);
    ok(&s, &["create", "serviceaccount", "dev", "-n", "team"]);
    ok(
        &s,
        &[
            "create",
            "rolebinding",
            "dev-edit",
            "--clusterrole=edit",
            "--serviceaccount=team:dev",
            "-n",
            "team",
        ],
    );
    let token = ok(&s, &["create", "token", "dev", "-n", "team"]);
    let as_dev = ["--token", token.trim()];

    // The attack: a user who may create pods asks for the host's root on a server node.
    let (created, out) = apply(&s, HOST_ROOT_POD, &as_dev);
    assert!(!created, "{out}");
    assert!(
        out.contains(
            r#"pods "root" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "host")"#
        ),
        "{out}"
    );
    let (_, out) = s.kubectl(&["get", "pod", "root", "-n", "team"]);
    assert!(out.contains("NotFound"), "nothing was written: {out}");

    // Privileged containers, host namespaces and ports: every reason in one message.
    let privileged = r#"
apiVersion: v1
kind: Pod
metadata: {name: priv, namespace: team}
spec:
  hostNetwork: true
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 80, hostPort: 80}]
    securityContext: {privileged: true, capabilities: {add: [SYS_ADMIN]}}
"#;
    let (created, out) = apply(&s, privileged, &as_dev);
    assert!(!created, "{out}");
    assert!(
        out.contains(
            r#"violates PodSecurity "baseline:latest": non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), host namespaces (hostNetwork=true), hostPort (container "c" uses hostPort 80), privileged (container "c" must not set securityContext.privileged=true)"#
        ),
        "{out}"
    );

    // A plain pod is fine at baseline.
    let plain = "apiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: team}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    let (created, out) = apply(&s, plain, &as_dev);
    assert!(created, "{out}");

    // Workloads are warned about (their pods are what is refused).
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hosty, namespace: team}
spec:
  selector: {matchLabels: {app: hosty}}
  template:
    metadata: {labels: {app: hosty}}
    spec:
      containers: [{name: c, image: busybox}]
      volumes: [{name: h, hostPath: {path: /etc}}]
"#;
    let (created, out) = apply(&s, deployment, &as_dev);
    assert!(created, "{out}");
    assert!(
        out.contains(
            r#"Warning: would violate PodSecurity "baseline:latest": hostPath volumes (volume "h")"#
        ),
        "{out}"
    );

    // Labels: an unknown level is refused; tightening warns about the pods already there.
    let (labelled, out) = s.kubectl(&["label", "ns", "team", &format!("{ENFORCE}=strict")]);
    assert!(!labelled, "{out}");
    assert!(
        out.contains(&format!(
            r#"metadata.labels[{ENFORCE}]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        )),
        "{out}"
    );
    let out = ok(
        &s,
        &["label", "ns", "team", &format!("{ENFORCE}=restricted")],
    );
    assert!(
        out.contains(
            r#"Warning: existing pods in namespace "team" violate the new PodSecurity enforce level "restricted:latest""#
        ),
        "{out}"
    );
    assert!(
        out.contains("Warning: plain: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{out}"
    );
    let plain2 = plain.replace("name: plain", "name: plain2");
    let (created, out) = apply(&s, &plain2, &as_dev);
    assert!(!created, "{out}");
    assert!(
        out.contains(r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#),
        "{out}"
    );
    let hardened = r#"
apiVersion: v1
kind: Pod
metadata: {name: hardened, namespace: team}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"#;
    let (created, out) = apply(&s, hardened, &as_dev);
    assert!(created, "{out}");

    // Only someone who may label the namespace loosens it.
    let (labelled, out) = s.kubectl(&[
        "--token",
        token.trim(),
        "label",
        "ns",
        "team",
        "--overwrite",
        &format!("{ENFORCE}=privileged"),
    ]);
    assert!(!labelled && out.contains("forbidden"), "{out}");
    ok(
        &s,
        &[
            "label",
            "ns",
            "team",
            "--overwrite",
            &format!("{ENFORCE}=privileged"),
        ],
    );
    let (created, out) = apply(&s, HOST_ROOT_POD, &as_dev);
    assert!(created, "a privileged namespace allows it: {out}");

    // The refusals are audited with upstream's annotations.
    let log = s.data_dir(0).join("audit.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let seen = text.lines().any(|l| {
            l.contains("\"pod-security.kubernetes.io/enforce-policy\":\"baseline:latest\"")
                && l.contains("\"code\":403")
        }) && text.lines().any(|l| {
            l.contains("pod-security.kubernetes.io/audit-violations")
                && l.contains("would violate PodSecurity")
        });
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "audit log: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = s.metrics(0);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pod_security_evaluations_total{")
                && l.contains("decision=\"deny\"")
                && l.contains("mode=\"enforce\"")),
        "{metrics}"
    );
}

#[test]
fn the_admission_configuration_sets_defaults_and_exemptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admission.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults: {enforce: restricted}
    exemptions: {namespaces: [infra]}
"#,
    )
    .expect("write admission configuration");
    let s = Servers::start(
        1,
        &format!(
            "[api]\nadmission_control_config_file = {:?}\n",
            file.display().to_string()
        ),
    );
    ok(&s, &["create", "namespace", "infra"]);
    ok(&s, &["create", "namespace", "apps"]);
    let host = HOST_ROOT_POD.replace("namespace: team", "namespace: infra");
    let (created, out) = apply(&s, &host, &[]);
    assert!(created, "an exempt namespace is not checked: {out}");
    let plain = "apiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: apps}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    let (created, out) = apply(&s, plain, &[]);
    assert!(!created, "{out}");
    assert!(
        out.contains(r#"violates PodSecurity "restricted:latest""#),
        "{out}"
    );

    // A configuration that does not parse stops the server with a one-line reason.
    let mut s = s;
    s.kill(0);
    std::fs::write(&file, "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults: {enforce: strict}\n")
        .expect("rewrite");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--config"])
        .arg(&s.nodes[0].config)
        .output()
        .expect("skiff server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("defaults.enforce: must be one of privileged, baseline, restricted"),
        "{err}"
    );
}
