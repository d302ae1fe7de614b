//! Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected
//! (configMap, secret, downwardAPI and serviceAccountToken sources) and
//! persistentVolumeClaim, each a directory that the pod's containers bind-mount.
//! ServiceAccount tokens of projected volumes are requested from the API (TokenRequest, bound
//! to the pod) and requested again at 80 % of their life (`Tokens::refresh`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ProjectedVolumeSource, Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, warn};

use super::mounts;
use crate::config::is_dns_label;
use crate::node::confined;
use crate::node::NodeError;

/// Mode of projected and downwardAPI files unless the volume or item says otherwise.
const DEFAULT_FILE_MODE: i32 = 0o644;
/// Token lifetime when a projection sets none (upstream's default).
const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// A failed token refresh is tried again after this (the old token stays meanwhile).
const TOKEN_RETRY: Duration = Duration::from_secs(10);

/// The files of `data` (every key, or only `items`) as (path, bytes, mode).
fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
) -> Vec<(String, Vec<u8>, i32)> {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let bytes = data.get(&i.key)?.clone();
                Some((i.path.clone(), bytes, i.mode.unwrap_or(mode)))
            })
            .collect(),
        None => data.into_iter().map(|(k, v)| (k, v, mode)).collect(),
    }
}

/// Writes `key -> bytes` files (or only `items`) into `dir` with `mode`.
fn write_keys(
    dir: &Path,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
) -> Result<(), NodeError> {
    write_files(dir, select(data, items, mode))
}

/// Writes files under `dir`, each atomically (a new file renamed over the old one, so a
/// container reading through the bind mount sees one or the other, never half). Paths are
/// resolved inside `dir` without following symlinks, whatever is found there.
fn write_files(dir: &Path, files: Vec<(String, Vec<u8>, i32)>) -> Result<(), NodeError> {
    fs::create_dir_all(dir)?;
    let root = confined::open_dir(dir)?;
    for (rel, bytes, mode) in files {
        let refused = || NodeError::Pod(format!("volume item path {rel:?} is not allowed"));
        if rel.starts_with('/') || rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(refused());
        }
        let path = Path::new(&rel);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(refused());
        };
        let parent = confined::mkdir_all(&root, parent, 0o755)?;
        confined::write_file(&parent, name, &bytes, mode as u32)?;
    }
    Ok(())
}

/// A directory readable by every user (the container may run as anyone), owned by root.
#[cfg(test)]
fn public_dir(dir: &Path) -> Result<(), NodeError> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

async fn config_map_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, NodeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|obj| {
        let mut data: BTreeMap<String, Vec<u8>> = obj
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            obj.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        data
    }))
}

async fn secret_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, NodeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|obj| {
        let mut data: BTreeMap<String, Vec<u8>> = obj
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        data.extend(
            obj.string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
        data
    }))
}

/// Upstream's `fieldpath.FormatMap`: `key="value"` lines in key order.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The content of a downwardAPI file (the fields upstream allows in volumes).
fn downward_value(pod: &Pod, f: &DownwardAPIVolumeFile) -> Result<Vec<u8>, NodeError> {
    let Some(r) = &f.field_ref else {
        return Err(NodeError::Pod(format!(
            "downwardAPI file {:?}: only fieldRef is supported",
            f.path
        )));
    };
    let m = &pod.metadata;
    let one = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        r.field_path
            .strip_prefix(prefix)
            .and_then(|k| k.strip_prefix("['").and_then(|k| k.strip_suffix("']")))
            .map(|k| map.and_then(|m| m.get(k).cloned()).unwrap_or_default())
    };
    let v = match r.field_path.as_str() {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        p => one("metadata.labels", m.labels.as_ref())
            .or_else(|| one("metadata.annotations", m.annotations.as_ref()))
            .ok_or_else(|| NodeError::Pod(format!("unsupported downwardAPI fieldRef {p:?}")))?,
    };
    Ok(v.into_bytes())
}

/// A projected ServiceAccount token file the node keeps fresh.
struct ProjectedToken {
    /// The volume directory and the token's path inside it.
    volume: PathBuf,
    path: String,
    audience: Option<String>,
    expiration_seconds: i64,
    mode: i32,
    refresh_at: Instant,
}

/// The projected ServiceAccount tokens of one pod.
#[derive(Default)]
pub struct Tokens(Vec<ProjectedToken>);

/// When a token with `lifetime` seconds left is requested again: at 80 % of its life.
fn refresh_after(lifetime: i64) -> Duration {
    Duration::from_secs((lifetime.max(0) as u64) * 4 / 5)
}

/// A token for the pod's ServiceAccount bound to the pod: (token, seconds it lives).
async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<(String, i64), NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(String::from).into_iter().collect(),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let out = api
        .create_token_request(&account, &PostParams::default(), &req)
        .await
        .map_err(|e| {
            NodeError::Pod(format!(
                "token for serviceaccount \"{account}\" of pod {ns}/{}: {e}",
                pod.metadata.name.as_deref().unwrap_or_default()
            ))
        })?;
    let status = out.status.ok_or_else(|| {
        NodeError::Pod(format!("token for serviceaccount \"{account}\": no status"))
    })?;
    let left = status.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    Ok((status.token, left))
}

impl Tokens {
    /// Requests again the tokens at 80 % of their life and rewrites their files; a failure
    /// keeps the current token and is tried again shortly.
    pub async fn refresh(&mut self, client: &Client, pod: &Pod) {
        let now = Instant::now();
        for t in self.0.iter_mut().filter(|t| t.refresh_at <= now) {
            let got = request_token(client, pod, t.audience.as_deref(), t.expiration_seconds).await;
            let written = got.and_then(|(token, left)| {
                write_files(
                    &t.volume,
                    vec![(t.path.clone(), token.into_bytes(), t.mode)],
                )?;
                Ok(left)
            });
            match written {
                Ok(left) => {
                    debug!(volume = %t.volume.display(), path = %t.path, "serviceaccount token refreshed");
                    t.refresh_at = Instant::now() + refresh_after(left);
                }
                Err(e) => {
                    warn!(volume = %t.volume.display(), path = %t.path, error = %e, "serviceaccount token refresh failed");
                    t.refresh_at = Instant::now() + TOKEN_RETRY;
                }
            }
        }
    }
}

/// A projected volume: every source's files in one directory.
async fn projected(
    client: &Client,
    pod: &Pod,
    ns: &str,
    dir: &Path,
    p: &ProjectedVolumeSource,
    tokens: &mut Tokens,
) -> Result<(), NodeError> {
    let mode = p.default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let mut files = Vec::new();
    let mut fresh = Vec::new();
    for s in p.sources.iter().flatten() {
        if let Some(cm) = &s.config_map {
            match config_map_data(client, ns, &cm.name).await? {
                Some(data) => files.extend(select(data, cm.items.as_ref(), mode)),
                None if cm.optional == Some(true) => {}
                None => {
                    return Err(NodeError::Pod(format!(
                        "configmap \"{}\" not found",
                        cm.name
                    )))
                }
            }
        }
        if let Some(sec) = &s.secret {
            match secret_data(client, ns, &sec.name).await? {
                Some(data) => files.extend(select(data, sec.items.as_ref(), mode)),
                None if sec.optional == Some(true) => {}
                None => return Err(NodeError::Pod(format!("secret \"{}\" not found", sec.name))),
            }
        }
        if let Some(d) = &s.downward_api {
            for f in d.items.iter().flatten() {
                files.push((
                    f.path.clone(),
                    downward_value(pod, f)?,
                    f.mode.unwrap_or(mode),
                ));
            }
        }
        if let Some(t) = &s.service_account_token {
            let exp = t.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
            let audience = t.audience.clone().filter(|a| !a.is_empty());
            let (token, left) = request_token(client, pod, audience.as_deref(), exp).await?;
            files.push((t.path.clone(), token.into_bytes(), mode));
            fresh.push(ProjectedToken {
                volume: dir.to_path_buf(),
                path: t.path.clone(),
                audience,
                expiration_seconds: exp,
                mode,
                refresh_at: Instant::now() + refresh_after(left),
            });
        }
    }
    mounts::memory_dir(dir)?;
    write_files(dir, files)?;
    tokens.0.extend(fresh);
    Ok(())
}

/// A volume ready for the pod's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub dir: PathBuf,
    /// Mounted read-only whatever the container asks, as upstream does for the volumes the
    /// node writes (a container must not plant files or symlinks the node later writes through).
    pub read_only: bool,
}

impl Prepared {
    fn writable(dir: PathBuf) -> Option<Self> {
        Some(Prepared {
            dir,
            read_only: false,
        })
    }

    fn read_only(dir: PathBuf) -> Self {
        Prepared {
            dir,
            read_only: true,
        }
    }
}

async fn volume_dir(
    client: &Client,
    pod: &Pod,
    root: &Path,
    v: &Volume,
    tokens: &mut Tokens,
) -> Result<Option<Prepared>, NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    // The API only admits DNS-1123 labels; checked again since the name becomes a path.
    if !is_dns_label(&v.name) {
        return Err(NodeError::Pod(format!(
            "volume name {:?} is not a DNS-1123 label",
            v.name
        )));
    }
    let dir = root.join(&v.name);
    if let Some(p) = &v.projected {
        projected(client, pod, ns, &dir, p, tokens).await?;
        return Ok(Some(Prepared::read_only(dir)));
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_FILE_MODE);
        let mut files = Vec::new();
        for f in d.items.iter().flatten() {
            files.push((
                f.path.clone(),
                downward_value(pod, f)?,
                f.mode.unwrap_or(mode),
            ));
        }
        mounts::memory_dir(&dir)?;
        write_files(&dir, files)?;
        return Ok(Some(Prepared::read_only(dir)));
    }
    if v.empty_dir.is_some() {
        fs::create_dir_all(&dir)?;
        // World-writable like upstream, so non-root containers can use it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        return Ok(Prepared::writable(dir));
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => fs::create_dir_all(&path)?,
            "FileOrCreate" if !path.exists() => {
                if let Some(p) = path.parent() {
                    fs::create_dir_all(p)?;
                }
                fs::write(&path, b"")?;
            }
            "Directory" | "File" if !path.exists() => {
                return Err(NodeError::Pod(format!(
                    "hostPath {} does not exist",
                    h.path
                )))
            }
            _ => {}
        }
        return Ok(Prepared::writable(path));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let dir = claim_dir(client, ns, &c.claim_name).await?;
        return Ok(Prepared::writable(dir));
    }
    // ConfigMap and Secret volumes: the object's keys as files.
    let source = if let Some(cm) = &v.config_map {
        let data = config_map_data(client, ns, &cm.name).await?;
        let how = (cm.optional, cm.items.as_ref(), cm.default_mode);
        ("configmap", cm.name.clone(), data, how)
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = secret_data(client, ns, &name).await?;
        (
            "secret",
            name,
            data,
            (s.optional, s.items.as_ref(), s.default_mode),
        )
    } else {
        return Ok(None);
    };
    let (kind, name, data, (optional, items, mode)) = source;
    match data {
        Some(data) => {
            mounts::memory_dir(&dir)?;
            write_keys(&dir, data, items, mode.unwrap_or(DEFAULT_FILE_MODE))?
        }
        None if optional == Some(true) => mounts::memory_dir(&dir)?,
        None => return Err(NodeError::Pod(format!("{kind} \"{name}\" not found"))),
    }
    Ok(Some(Prepared::read_only(dir)))
}

/// The host directory of a bound claim's volume (hostPath or local). Until the claim is
/// bound the pod waits (setup is retried), as a kubelet waits for its volumes to attach.
async fn claim_dir(client: &Client, ns: &str, claim: &str) -> Result<PathBuf, NodeError> {
    let pending = |why: String| NodeError::Pod(format!("persistentvolumeclaim \"{claim}\" {why}"));
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await?
        .ok_or_else(|| pending("not found".into()))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .filter(|n| bound && !n.is_empty())
        .ok_or_else(|| pending("is not bound yet".into()))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&name)
        .await?
        .ok_or_else(|| pending(format!("is bound to a missing volume {name}")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            NodeError::Pod(format!(
                "volume {name}: only hostPath and local volumes are supported"
            ))
        })?;
    let path = PathBuf::from(path);
    // A local-path directory removed behind the node's back comes back empty.
    if pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::controllers::volumes::LOCAL_PATH_NODE))
        .is_some()
    {
        fs::create_dir_all(&path)?;
    }
    if !path.is_dir() {
        return Err(NodeError::Pod(format!(
            "volume {name}: {} is not a directory",
            path.display()
        )));
    }
    Ok(path)
}

/// Prepares every volume of the pod; returns name -> its directory. Kinds the node does
/// not support are left out (a container mounting one fails with a clear message). The
/// projected ServiceAccount tokens written go into `tokens` (replacing what it had).
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    root: &Path,
    tokens: &mut Tokens,
) -> Result<BTreeMap<String, Prepared>, NodeError> {
    let mut out = BTreeMap::new();
    let mut fresh = Tokens::default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(dir) = volume_dir(client, pod, root, v, &mut fresh).await? {
            out.insert(v.name.clone(), dir);
        }
    }
    *tokens = fresh;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectFieldSelector;

    fn file(path: &str, field: &str) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: field.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn downward_files_and_token_refresh_time() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1",
                "labels": {"b": "2", "a": "x\"y"}}
        }))
        .expect("pod");
        let v = |f: &str| String::from_utf8(downward_value(&pod, &file("p", f)).expect(f)).unwrap();
        assert_eq!(v("metadata.namespace"), "ns1");
        assert_eq!(v("metadata.uid"), "u1");
        assert_eq!(v("metadata.labels"), "a=\"x\\\"y\"\nb=\"2\"");
        assert_eq!(v("metadata.labels['b']"), "2");
        assert!(downward_value(&pod, &file("p", "spec.nodeName")).is_err());
        assert_eq!(refresh_after(3607), Duration::from_secs(2885));
        assert_eq!(refresh_after(-5), Duration::ZERO);
    }

    #[test]
    fn files_are_written_atomically_with_their_mode_and_stay_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        public_dir(&vol).expect("dir");
        write_files(
            &vol,
            vec![
                ("token".into(), b"t1".to_vec(), 0o644),
                ("sub/ca.crt".into(), b"ca".to_vec(), 0o600),
            ],
        )
        .expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&vol), 0o755);
        assert_eq!(mode(&vol.join("token")), 0o644);
        assert_eq!(mode(&vol.join("sub/ca.crt")), 0o600);
        write_files(&vol, vec![("token".into(), b"t2".to_vec(), 0o644)]).expect("rewrite");
        assert_eq!(fs::read(vol.join("token")).expect("read"), b"t2");
        for bad in ["../x", "/etc/x", "a//b"] {
            assert!(
                write_files(&vol, vec![(bad.into(), vec![], 0o644)]).is_err(),
                "{bad}"
            );
        }
    }
}
