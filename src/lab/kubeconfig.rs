//! The lab's cluster, user and context (all named `NAME-lab`, `skiff-lab` by default) in the user's kubeconfig: merged next to what is
//! there (other contexts untouched) and removed again by `down`. The cluster carries the
//! cluster CA (`certificate-authority-data`), the user the admin token, so the file is
//! written with mode 0600.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{json, Value};

use crate::pki::client::{Access, Identity};

use super::LabError;

/// `$KUBECONFIG`'s first file, else `~/.kube/config` (kubectl's choice for writes).
pub fn default_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".kube/config")
}

fn err(path: &Path, reason: impl Into<String>) -> LabError {
    LabError::Kubeconfig {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Option<Value>, LabError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(None),
        Ok(t) => yaml_serde::from_str(&t)
            .map(Some)
            .map_err(|e| err(path, format!("not valid YAML: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path, e.to_string())),
    }
}

/// Written aside and renamed with mode 0600, so a failure never leaves half a file.
fn write(path: &Path, doc: &Value) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let text = yaml_serde::to_string(doc).map_err(|e| err(path, e.to_string()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(path, e.to_string()))?;
    }
    let tmp = path.with_extension("skiff-lab.tmp");
    std::fs::write(&tmp, text).map_err(|e| err(path, e.to_string()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(path, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e.to_string()))
}

/// Drops entries named `context` from `clusters`, `contexts` and `users`.
fn strip(doc: &mut Value, context: &str) {
    for list in ["clusters", "contexts", "users"] {
        if let Some(items) = doc.get_mut(list).and_then(Value::as_array_mut) {
            items.retain(|i| i.get("name").and_then(Value::as_str) != Some(context));
        }
    }
}

fn entries(doc: &Value, list: &str) -> usize {
    doc.get(list).and_then(Value::as_array).map_or(0, Vec::len)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The kubeconfig `user` of an identity.
fn user(identity: &Identity) -> Value {
    match identity {
        Identity::Token(t) => json!({"token": t}),
        Identity::Cert(c) => json!({
            "client-certificate-data": b64(&c.cert),
            "client-key-data": b64(&c.key),
        }),
    }
}

/// Merges the lab context `context` (`access`: the server, the CA to trust and who to be)
/// into `path`; makes it the current context only when the file has none. Returns whether
/// the file was created.
pub fn merge(path: &Path, context: &str, access: &Access) -> Result<bool, LabError> {
    let existing = read(path)?;
    let created = existing.is_none();
    let mut doc = existing.unwrap_or_else(|| json!({"apiVersion": "v1", "kind": "Config"}));
    if !doc.is_object() {
        return Err(err(path, "not a kubeconfig (top level is not a map)"));
    }
    strip(&mut doc, context);
    let add = |doc: &mut Value, list: &str, item: Value| -> Result<(), LabError> {
        let slot = &mut doc[list];
        if slot.is_null() {
            *slot = json!([]);
        }
        slot.as_array_mut()
            .ok_or_else(|| err(path, format!("`{list}` is not a list")))?
            .push(item);
        Ok(())
    };
    add(
        &mut doc,
        "clusters",
        json!({"name": context, "cluster": {
            "server": access.url,
            "certificate-authority-data": b64(&access.ca_pem),
        }}),
    )?;
    add(
        &mut doc,
        "users",
        json!({"name": context, "user": user(&access.identity)}),
    )?;
    add(
        &mut doc,
        "contexts",
        json!({"name": context, "context": {"cluster": context, "user": context}}),
    )?;
    if doc
        .get("current-context")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        doc["current-context"] = json!(context);
    }
    write(path, &doc)?;
    Ok(created)
}

/// Removes the lab's entries; deletes the file if the lab created it and nothing else is left.
pub fn remove(path: &Path, context: &str, created: bool) -> Result<(), LabError> {
    let Some(mut doc) = read(path)? else {
        return Ok(());
    };
    strip(&mut doc, context);
    if doc.get("current-context").and_then(Value::as_str) == Some(context) {
        doc["current-context"] = json!("");
    }
    let empty = ["clusters", "contexts", "users"]
        .iter()
        .all(|l| entries(&doc, l) == 0);
    if created && empty {
        return std::fs::remove_file(path).map_err(|e| err(path, e.to_string()));
    }
    write(path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "skiff-lab";

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn access(url: &str) -> Access {
        Access {
            url: url.into(),
            ca_pem: CA.into(),
            identity: Identity::Token("admin-token".into()),
        }
    }

    #[test]
    fn the_lab_entries_carry_the_ca_and_the_admin_token_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        merge(&path, CONTEXT, &access("https://127.0.0.1:6443")).expect("merge");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let doc = read(&path).expect("read").expect("doc");
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:6443");
        let ca = base64::engine::general_purpose::STANDARD
            .decode(
                cluster["certificate-authority-data"]
                    .as_str()
                    .expect("ca data"),
            )
            .expect("base64");
        assert_eq!(ca, CA.as_bytes());
        assert_eq!(doc["users"][0]["name"], CONTEXT);
        assert_eq!(doc["users"][0]["user"]["token"], "admin-token");
        // kubectl's own reader takes it (same shape as `skiff kubeconfig`).
        let kc: kube::config::Kubeconfig =
            serde_json::from_value(doc.clone()).expect("a kubeconfig");
        assert_eq!(kc.current_context.as_deref(), Some(CONTEXT));
        // A certificate identity becomes client-certificate-data and client-key-data.
        let mut a = access("https://127.0.0.1:6443");
        a.identity = Identity::Cert(crate::pki::KeyedCert {
            cert: "C".into(),
            key: "K".into(),
        });
        merge(&path, CONTEXT, &a).expect("merge again");
        let doc = read(&path).expect("read").expect("doc");
        assert_eq!(entries(&doc, "users"), 1);
        let u = &doc["users"][0]["user"];
        assert_eq!(u["client-certificate-data"], b64("C"));
        assert_eq!(u["client-key-data"], b64("K"));
        assert!(u.get("token").is_none(), "{u}");
    }

    #[test]
    fn merge_keeps_other_contexts_and_remove_restores_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        let other = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod\ncurrent-context: prod\nusers:\n- name: prod\n  user:\n    token: secret\npreferences: {}\n";
        std::fs::write(&path, other).expect("write");
        assert!(!merge(&path, CONTEXT, &access("https://127.0.0.1:6443")).expect("merge"));
        // Merging twice leaves one entry.
        merge(&path, CONTEXT, &access("https://127.0.0.1:6443")).expect("merge again");
        let doc = read(&path).expect("read").expect("doc");
        assert_eq!(entries(&doc, "contexts"), 2);
        assert_eq!(entries(&doc, "users"), 2);
        assert_eq!(doc["users"][1]["user"]["token"], "admin-token");
        assert_eq!(doc["current-context"], "prod");
        assert_eq!(doc["users"][0]["user"]["token"], "secret");
        remove(&path, CONTEXT, false).expect("remove");
        let doc = read(&path).expect("read").expect("doc");
        let want: Value = yaml_serde::from_str(other).expect("yaml");
        assert_eq!(doc, want);
    }

    #[test]
    fn a_file_the_lab_created_goes_away_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/config");
        assert!(merge(&path, CONTEXT, &access("https://127.0.0.1:6443")).expect("merge"));
        let doc = read(&path).expect("read").expect("doc");
        assert_eq!(doc["current-context"], CONTEXT);
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        remove(&path, CONTEXT, true).expect("remove");
        assert!(!path.exists());
        remove(&path, CONTEXT, true).expect("idempotent");
    }

    #[test]
    fn a_broken_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: [unclosed").expect("write");
        assert!(merge(&path, CONTEXT, &access("https://x")).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "clusters: [unclosed"
        );
    }
}
