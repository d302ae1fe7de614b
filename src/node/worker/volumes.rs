//! Pod volumes on the node: emptyDir, hostPath, configMap, secret and persistentVolumeClaim,
//! each a directory that the pod's containers bind-mount.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::{Api, Client};

use crate::node::NodeError;

/// Writes `key -> bytes` files (or only `items`) into `dir` with `mode`.
fn write_keys(
    dir: &Path,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
) -> Result<(), NodeError> {
    fs::create_dir_all(dir)?;
    let files: Vec<(String, Vec<u8>, i32)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let bytes = data.get(&i.key)?.clone();
                Some((i.path.clone(), bytes, i.mode.unwrap_or(mode)))
            })
            .collect(),
        None => data.into_iter().map(|(k, v)| (k, v, mode)).collect(),
    };
    for (rel, bytes, mode) in files {
        if rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(NodeError::Pod(format!(
                "volume item path {rel:?} is not allowed"
            )));
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("skiff-tmp");
        fs::write(&tmp, bytes)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode as u32 & 0o777))?;
        fs::rename(tmp, path)?;
    }
    Ok(())
}

async fn volume_dir(
    client: &Client,
    ns: &str,
    root: &Path,
    v: &Volume,
) -> Result<Option<PathBuf>, NodeError> {
    let dir = root.join(&v.name);
    if v.empty_dir.is_some() {
        fs::create_dir_all(&dir)?;
        // World-writable like upstream, so non-root containers can use it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        return Ok(Some(dir));
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
        return Ok(Some(path));
    }
    if let Some(c) = &v.persistent_volume_claim {
        return claim_dir(client, ns, &c.claim_name).await.map(Some);
    }
    // ConfigMap and Secret volumes: the object's keys as files.
    let source = if let Some(cm) = &v.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let data = api.get_opt(&cm.name).await?.map(|obj| {
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
        });
        let how = (cm.optional, cm.items.as_ref(), cm.default_mode);
        ("configmap", cm.name.clone(), data, how)
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let data = api.get_opt(&name).await?.map(|obj| {
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
        });
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
        Some(data) => write_keys(&dir, data, items, mode.unwrap_or(0o644))?,
        None if optional == Some(true) => fs::create_dir_all(&dir)?,
        None => return Err(NodeError::Pod(format!("{kind} \"{name}\" not found"))),
    }
    Ok(Some(dir))
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

/// Prepares every volume of the pod; returns name -> host directory. Kinds the node does
/// not support are left out (a container mounting one fails with a clear message).
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    root: &Path,
) -> Result<BTreeMap<String, PathBuf>, NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(dir) = volume_dir(client, ns, root, v).await? {
            out.insert(v.name.clone(), dir);
        }
    }
    Ok(out)
}
