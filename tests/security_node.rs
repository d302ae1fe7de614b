//! The node-side holes of the security review, each attack performed against a real node
//! (runc, as root; see tests/common/node_host.rs) and shown refused: subPath escapes, secret
//! contents on disk, a named image USER running as root, runAsNonRoot ignored, the security
//! context ignored (read-only root, capabilities, seccomp, privileged), a wide data dir.

#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, LogParams, PostParams};
use node_host::{phase, root_or_skip, run, wait_pod, NodeHost, IMAGE, REGISTRY};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("pod")
}

/// The output of a pod that runs to completion (restartPolicy Never).
async fn output(api: &Api<Pod>, name: &str, container: &str) -> String {
    let done = wait_pod(api, name, 90, |p| {
        matches!(phase(p), "Succeeded" | "Failed").then(|| phase(p).to_string())
    })
    .await;
    let params = LogParams {
        container: Some(container.into()),
        ..Default::default()
    };
    let logs = api.logs(name, &params).await.expect("logs");
    assert_eq!(done, "Succeeded", "pod {name} failed; logs:\n{logs}");
    logs
}

/// A namespace where Pod Security admits anything (hostPath, privileged).
async fn privileged_namespace(host: &NodeHost, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name,
                     "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}
    }))
    .expect("namespace");
    Api::<Namespace>::all(host.client())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

#[tokio::test(flavor = "multi_thread")]
async fn volumes_stay_inside_and_secrets_stay_in_memory() {
    if !root_or_skip("volumes_stay_inside_and_secrets_stay_in_memory") {
        return;
    }
    let host = tokio::task::block_in_place(|| NodeHost::start(""));
    let api: Api<Pod> = Api::namespaced(host.client(), "default");

    // The API refuses subPaths leaving their volume, with upstream's causes.
    for (sub, why) in [
        ("/", "must be a relative path"),
        ("a/../..", "must not contain '..'"),
    ] {
        let spec = json!({
            "containers": [{"name": "c", "image": IMAGE,
                "volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": sub}]}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        });
        let err = api
            .create(&PostParams::default(), &pod("bad-subpath", spec))
            .await
            .expect_err("subPath refused");
        let kube::Error::Api(status) = err else {
            panic!("not an API error: {err}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains(&format!(
                "spec.containers[0].volumeMounts.subPath: Invalid value: \"{sub}\": {why}"
            )),
            "{}",
            status.message
        );
    }

    // A container plants a symlink to / in an emptyDir; a later container mounting it as
    // its subPath gets the volume itself, not the host's root.
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "plant", "image": IMAGE,
            "command": ["sh", "-c", "ln -s / /data/escape && touch /data/in-the-volume"],
            "volumeMounts": [{"name": "shared", "mountPath": "/data"}]}],
        "containers": [{"name": "victim", "image": IMAGE,
            "command": ["sh", "-c", "ls -a /mnt"],
            "volumeMounts": [{"name": "shared", "mountPath": "/mnt", "subPath": "escape"}]}],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    });
    api.create(&PostParams::default(), &pod("escape", spec))
        .await
        .expect("create");
    let listing = output(&api, "escape", "victim").await;
    let names: Vec<&str> = listing.split_whitespace().collect();
    assert!(names.contains(&"in-the-volume"), "{listing}");
    for host_dir in ["proc", "usr", "etc"] {
        assert!(!names.contains(&host_dir), "host root mounted: {listing}");
    }

    // Secret files live on a tmpfs (never the node's disk), read-only to the container,
    // with upstream's modes.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(host.client(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": IMAGE,
            "command": ["sh", "-c", "grep ' /creds ' /proc/self/mountinfo; \
                echo modes=$(stat -c %a /creds /creds/password); \
                if touch /creds/x 2>/dev/null; then echo writable; else echo read-only; fi"],
            "volumeMounts": [{"name": "s", "mountPath": "/creds"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": "creds"}}],
    });
    api.create(&PostParams::default(), &pod("secret-reader", spec))
        .await
        .expect("create");
    let out = output(&api, "secret-reader", "c").await;
    let mount = out.lines().next().unwrap_or_default();
    assert!(mount.contains(" - tmpfs "), "not a tmpfs: {out}");
    assert!(
        mount
            .split(' ')
            .nth(5)
            .is_some_and(|o| o.split(',').any(|f| f == "ro")),
        "{out}"
    );
    assert!(out.contains("modes=755 644"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    // And nothing of it in the node's state directory on disk.
    let found = Command::new("grep")
        .args(["-r", "-l", "hunter2"])
        .arg(host.state_dir().join("pods"))
        .output()
        .expect("grep");
    let found = String::from_utf8_lossy(&found.stdout).into_owned();
    // grep sees the tmpfs contents through the mount; no file outside a mounted volume.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for file in found.lines() {
        let on_tmpfs = mounts.lines().any(|l| {
            let mut f = l.split(' ');
            let point = f.nth(4).unwrap_or_default();
            file.starts_with(&format!("{point}/")) && l.contains(" - tmpfs ")
        });
        assert!(on_tmpfs, "secret written to disk at {file}");
    }
}

/// The busybox image with `User` set in its config, pushed to the host's registry as
/// `busybox-user:latest`.
fn push_image_with_user(host: &NodeHost, user: &str) -> String {
    let dir = host.dir.path().join("user-image");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-busybox-image.sh");
    run(Command::new("bash").arg(script).arg(&dir));
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read = |p: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
    };
    let put = |v: &Value| -> (String, usize) {
        let bytes = serde_json::to_vec(v).expect("json");
        let digest = format!("{:x}", Sha256::digest(&bytes));
        std::fs::write(dir.join("blobs/sha256").join(&digest), &bytes).expect("blob");
        (format!("sha256:{digest}"), bytes.len())
    };
    let mut index = read(&dir.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let mut manifest = read(&blob(&manifest_digest));
    let mut config = read(&blob(
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    config["config"]["User"] = json!(user);
    let (digest, size) = put(&config);
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(size);
    let (digest, size) = put(&manifest);
    index["manifests"][0]["digest"] = json!(digest);
    index["manifests"][0]["size"] = json!(size);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    let reference = format!("{REGISTRY}/busybox-user:latest");
    run(Command::new("nsenter")
        .arg(format!("--net={}", host.netns.display()))
        .args(["skopeo", "copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", dir.display()))
        .arg(format!("docker://{reference}")));
    reference
}

#[tokio::test(flavor = "multi_thread")]
async fn image_users_resolve_and_run_as_non_root_is_enforced() {
    if !root_or_skip("image_users_resolve_and_run_as_non_root_is_enforced") {
        return;
    }
    let host = tokio::task::block_in_place(|| NodeHost::start(""));
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let image = tokio::task::block_in_place(|| push_image_with_user(&host, "www-data"));

    // USER www-data runs as www-data's uid and gid from the image's /etc/passwd, not root.
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": image, "command": ["sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]}],
    });
    api.create(&PostParams::default(), &pod("named-user", spec))
        .await
        .expect("create");
    let out = output(&api, "named-user", "c").await;
    assert_eq!(out.trim(), "uid=33 gid=33");

    // runAsNonRoot on an image running as root: the container is never created.
    let spec = json!({
        "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "c", "image": IMAGE, "command": ["sleep", "3600"]}],
    });
    let created = api
        .create(&PostParams::default(), &pod("rooted", spec))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let waiting = wait_pod(&api, "rooted", 60, |p| {
        let st = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .clone();
        st.state?
            .waiting
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    })
    .await;
    assert_eq!(
        waiting.message.as_deref(),
        Some(format!("container has runAsNonRoot and image will run as root (pod: \"rooted_default({uid})\", container: c)").as_str())
    );
    // A named user cannot be verified non-root, as upstream.
    let spec = json!({
        "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}],
    });
    api.create(&PostParams::default(), &pod("named-non-root", spec))
        .await
        .expect("create");
    let message = wait_pod(&api, "named-non-root", 60, |p| {
        let st = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .clone();
        st.state?
            .waiting
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))?
            .message
    })
    .await;
    assert!(
        message.starts_with("container has runAsNonRoot and image has non-numeric user (www-data), cannot verify user is non-root"),
        "{message}"
    );
}

/// The `Name:\tvalue` line of a /proc/self/status dump.
fn status_field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_run_confined_as_their_security_context_says() {
    if !root_or_skip("containers_run_confined_as_their_security_context_says") {
        return;
    }
    let mut host = tokio::task::block_in_place(|| NodeHost::start(""));
    let api: Api<Pod> = Api::namespaced(host.client(), "default");
    let probe = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; \
        echo cgroups-outside=$(grep -cv ':/$' /proc/self/cgroup); \
        echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max); \
        if touch /written 2>/dev/null; then echo root=rw; else echo root=ro; fi";
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [
            {"name": "plain", "image": IMAGE, "command": ["sh", "-c", probe]},
            {"name": "tight", "image": IMAGE, "command": ["sh", "-c", probe],
             "securityContext": {"readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}},
        ],
    });
    api.create(&PostParams::default(), &pod("confined", spec))
        .await
        .expect("create");
    // Defaults: runc's three capabilities, seccomp filter mode, no-new-privileges, its own
    // cgroup namespace, the node's pids limit, a writable root.
    let plain = output(&api, "confined", "plain").await;
    assert_eq!(
        status_field(&plain, "CapEff"),
        "0000000020000420",
        "{plain}"
    );
    assert_eq!(status_field(&plain, "Seccomp"), "2", "{plain}");
    assert_eq!(status_field(&plain, "NoNewPrivs"), "1", "{plain}");
    // Its own cgroup namespace: every hierarchy shows the container's cgroup as `/`.
    assert!(plain.contains("cgroups-outside=0\n"), "{plain}");
    assert!(plain.contains("pids=4096"), "{plain}");
    assert!(plain.contains("root=rw"), "{plain}");
    // Dropped capabilities are gone (CHOWN added back alone); the root is read-only.
    let tight = output(&api, "confined", "tight").await;
    assert_eq!(
        status_field(&tight, "CapEff"),
        "0000000000000001",
        "{tight}"
    );
    assert!(tight.contains("root=ro"), "{tight}");

    // Privileged (in a namespace that admits it): every capability, no seccomp filter,
    // host devices.
    privileged_namespace(&host, "privileged-ns").await;
    let papi: Api<Pod> = Api::namespaced(host.client(), "privileged-ns");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": IMAGE,
            "command": ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /dev"],
            "securityContext": {"privileged": true}}],
    });
    // Until the namespace's default ServiceAccount exists, pod creation is refused.
    let p = pod("privileged", spec);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = papi.create(&PostParams::default(), &p).await {
        assert!(Instant::now() < deadline, "create privileged pod: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = output(&papi, "privileged", "c").await;
    // Every capability the node holds (40, CHECKPOINT_RESTORE, only if runc knows it).
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex");
    let own = std::fs::read_to_string("/proc/self/status").expect("status");
    let eff = hex(status_field(&out, "CapEff"));
    assert_eq!(
        eff | 1 << 40,
        hex(status_field(&own, "CapBnd")) | 1 << 40,
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert!(
        out.split_whitespace()
            .any(|n| n == "loop-control" || n == "kmsg"),
        "{out}"
    );

    // A data directory found wider than 0700 is narrowed at start.
    let data = host.dir.path().join("data");
    host.kill_server();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    tokio::task::block_in_place(|| host.start_server());
    let mode = std::fs::metadata(&data).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}
