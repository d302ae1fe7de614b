//! Secrets encrypted at rest: three real `skiff server` processes, kubectl, and a raw byte
//! search of every file under the data dirs (raft log, snapshots, everything).

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use servers::Servers;

const ENC_PREFIX: &str = "k8s:enc:aesgcm:v1:";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A value that appears nowhere unless this test wrote it.
fn unique(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// A `name:base64` key entry with a random key.
fn random_key(name: &str) -> String {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("{name}:{}", b64(&key))
}

fn encryption_section(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("[encryption]\nkeys = [{}]\n", keys.join(", "))
}

/// Polls `check` every 100 ms until it holds; fails the test after `within`.
fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Files under server `i`'s data dir whose bytes contain `needle`.
fn files_with(s: &Servers, i: usize, needle: &[u8]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(&s.data_dir(i), &mut files);
    assert!(
        !files.is_empty(),
        "no files under {}",
        s.data_dir(i).display()
    );
    files
        .into_iter()
        // A file removed meanwhile (log purge, snapshot rotation) holds nothing any more.
        .filter(|f| std::fs::read(f).is_ok_and(|b| contains(&b, needle)))
        .collect()
}

/// Fails if any file under any data dir holds one of `needles`.
fn assert_nowhere(s: &Servers, needles: &[&str]) {
    for i in 0..s.nodes.len() {
        for n in needles {
            let found = files_with(s, i, n.as_bytes());
            assert!(found.is_empty(), "{n:?} stored in the clear in {found:?}");
        }
    }
}

fn kubectl_ok(s: &Servers, args: &[&str]) -> String {
    let (ok, out) = s.kubectl(args);
    assert!(ok, "kubectl {args:?} failed: {out}");
    out
}

fn create_secret(s: &Servers, name: &str, value: &str) {
    kubectl_ok(
        s,
        &[
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=password={value}"),
        ],
    );
}

fn secret_password(s: &Servers, name: &str) -> String {
    kubectl_ok(
        s,
        &["get", "secret", name, "-o", "jsonpath={.data.password}"],
    )
}

/// Kills every server, lets `rewrite` change each config file, and starts them again.
fn restart_all(s: &mut Servers, mut rewrite: impl FnMut(usize, String) -> String) {
    for i in 0..s.nodes.len() {
        s.kill(i);
    }
    for i in 0..s.nodes.len() {
        let path = s.nodes[i].config.clone();
        let text = std::fs::read_to_string(&path).expect("read config");
        std::fs::write(&path, rewrite(i, text)).expect("write config");
    }
    for i in 0..s.nodes.len() {
        s.spawn(i);
    }
    for i in 0..s.nodes.len() {
        s.wait_ready(i);
    }
}

/// Replaces the `keys = [...]` line of the `[encryption]` section.
fn with_keys(config: &str, keys: &[&str]) -> String {
    let line = encryption_section(keys);
    let line = line.lines().nth(1).expect("keys line");
    let out: Vec<&str> = config
        .lines()
        .map(|l| if l.starts_with("keys = ") { line } else { l })
        .collect();
    assert!(out.contains(&line), "no keys line in {config}");
    out.join("\n") + "\n"
}

#[test]
fn secret_values_never_reach_the_disk_in_the_clear() {
    // Small snapshot interval: state-machine snapshots are written within seconds.
    let s = Servers::start(3, "[raft]\nsnapshot_interval = 10\n");
    let plain = unique("pw");
    let encoded = b64(plain.as_bytes());
    create_secret(&s, "s1", &plain);

    let yaml = kubectl_ok(&s, &["get", "secret", "s1", "-o", "yaml"]);
    assert!(
        yaml.contains(&format!("password: {encoded}")),
        "value not returned: {yaml}"
    );
    assert_eq!(secret_password(&s, "s1"), encoded);

    // Writes after the secret until every server has a snapshot taken after them (it holds
    // the secret too: the log is applied in order); the marker is in the clear (ConfigMaps
    // are not encrypted), so it shows which snapshots are recent enough.
    let marker = unique("after");
    let mut n = 0;
    until(
        Duration::from_secs(60),
        "a snapshot holding the secret on every server",
        || {
            kubectl_ok(&s, &["create", "configmap", &format!("{marker}-{n}")]);
            n += 1;
            (0..3).all(|i| {
                files_with(&s, i, marker.as_bytes())
                    .iter()
                    .any(|f| f.extension().is_some_and(|e| e == "snap"))
            })
        },
    );

    assert_nowhere(&s, &[&plain, &encoded]);
    // Every server has the secret, encrypted, in its snapshots (and its log).
    for i in 0..3 {
        let snaps = files_with(&s, i, ENC_PREFIX.as_bytes());
        assert!(
            snaps
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "snap")),
            "no snapshot of server {i} holds an encrypted value: {snaps:?}"
        );
    }

    // Without configured keys each server generated one, readable by its owner only.
    for i in 0..3 {
        use std::os::unix::fs::PermissionsExt;
        let path = s.data_dir(i).join("pki").join("encryption-keys");
        let meta = std::fs::metadata(&path).expect("generated keys file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path:?}");
        let text = std::fs::read_to_string(&path).expect("keys file");
        assert!(
            text.starts_with("key1:"),
            "keys file is {} lines",
            text.lines().count()
        );
    }
    // The generated key encrypted the secret.
    assert!(!files_with(&s, 0, format!("{ENC_PREFIX}key1:").as_bytes()).is_empty());

    // Updates are encrypted too, and still read back.
    let plain2 = unique("pw2");
    let patch = format!(
        "{{\"data\":{{\"password\":\"{}\"}}}}",
        b64(plain2.as_bytes())
    );
    kubectl_ok(&s, &["patch", "secret", "s1", "-p", &patch]);
    assert_eq!(secret_password(&s, "s1"), b64(plain2.as_bytes()));
    kubectl_ok(&s, &["create", "configmap", &format!("{marker}-sync")]);
    until(
        Duration::from_secs(20),
        "the update on every server",
        || (0..3).all(|i| !files_with(&s, i, format!("{marker}-sync").as_bytes()).is_empty()),
    );
    assert_nowhere(&s, &[&plain2, &b64(plain2.as_bytes())]);
}

#[test]
fn rotating_the_key_keeps_old_secrets_readable() {
    let key1 = random_key("key1");
    let key2 = random_key("key2");
    let mut s = Servers::start(3, &encryption_section(&[&key1]));
    let a = unique("a");
    create_secret(&s, "a", &a);
    assert_eq!(secret_password(&s, "a"), b64(a.as_bytes()));

    // Rotation: key2 first (new writes), key1 kept (old values).
    restart_all(&mut s, |_, text| with_keys(&text, &[&key2, &key1]));
    assert_eq!(secret_password(&s, "a"), b64(a.as_bytes()));
    let b = unique("b");
    create_secret(&s, "b", &b);
    assert_eq!(secret_password(&s, "b"), b64(b.as_bytes()));

    let key2_prefix = format!("{ENC_PREFIX}key2:");
    until(
        Duration::from_secs(20),
        "key2 values on every server",
        || (0..3).all(|i| !files_with(&s, i, key2_prefix.as_bytes()).is_empty()),
    );
    let key1_prefix = format!("{ENC_PREFIX}key1:");
    assert!(!files_with(&s, 0, key1_prefix.as_bytes()).is_empty());

    // Rewriting the old secret moves it to key2; it still reads back.
    let a2 = unique("a2");
    let patch = format!("{{\"data\":{{\"password\":\"{}\"}}}}", b64(a2.as_bytes()));
    kubectl_ok(&s, &["patch", "secret", "a", "-p", &patch]);
    assert_eq!(secret_password(&s, "a"), b64(a2.as_bytes()));
    // Configured keys: no generated key file.
    assert!(!s.data_dir(0).join("pki").join("encryption-keys").exists());
    assert_nowhere(
        &s,
        &[
            &a,
            &b,
            &a2,
            &b64(a.as_bytes()),
            &b64(b.as_bytes()),
            &b64(a2.as_bytes()),
        ],
    );
}

#[test]
fn a_missing_key_is_an_internal_error_not_a_crash() {
    let key1 = random_key("key1");
    let key3 = random_key("key3");
    let mut s = Servers::start(3, &encryption_section(&[&key1]));
    let a = unique("a");
    create_secret(&s, "a", &a);
    kubectl_ok(
        &s,
        &["create", "configmap", "plain-cm", "--from-literal=k=v"],
    );

    // Server 0 (the one kubectl talks to) loses key1; the others keep it.
    restart_all(&mut s, |i, text| {
        if i == 0 {
            with_keys(&text, &[&key3])
        } else {
            text
        }
    });
    for args in [
        &["get", "secret", "a", "-o", "yaml"][..],
        &["get", "secrets"][..],
    ] {
        let (ok, out) = s.kubectl(args);
        assert!(!ok, "kubectl {args:?} succeeded: {out}");
        assert!(out.contains("InternalError"), "kubectl {args:?}: {out}");
        assert!(
            !out.contains(&a) && !out.contains(&b64(a.as_bytes())),
            "{out}"
        );
    }
    // Everything else still works, new secrets included (encrypted with key3).
    kubectl_ok(&s, &["get", "configmap", "plain-cm"]);
    let c = unique("c");
    create_secret(&s, "c", &c);
    assert_eq!(secret_password(&s, "c"), b64(c.as_bytes()));
    assert!(!files_with(&s, 0, format!("{ENC_PREFIX}key3:").as_bytes()).is_empty());
    // Still running and ready.
    s.wait_ready(0);
}
