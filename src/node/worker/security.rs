//! A container's security settings, derived as kubelet and containerd do: who it runs as
//! (the image's USER resolved through the rootfs's /etc/passwd and /etc/group, or the
//! securityContext), the runAsNonRoot check, capabilities, no-new-privileges, privileged,
//! a read-only root and the seccomp profile.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};
use oci_spec::runtime::{Capability, LinuxSeccomp};

use crate::node::confined;
use crate::node::runtime::seccomp;
use crate::node::NodeError;

/// Largest /etc/passwd or /etc/group read from an image.
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

/// Skiff's default set (runc's): what a container has unless it adds or drops.
const DEFAULT_CAPS: &[Capability] = &[
    Capability::AuditWrite,
    Capability::Kill,
    Capability::NetBindService,
];

/// Every capability with its bit number (`add: [ALL]`, privileged).
const ALL_CAPS: &[(Capability, u32)] = &[
    (Capability::Chown, 0),
    (Capability::DacOverride, 1),
    (Capability::DacReadSearch, 2),
    (Capability::Fowner, 3),
    (Capability::Fsetid, 4),
    (Capability::Kill, 5),
    (Capability::Setgid, 6),
    (Capability::Setuid, 7),
    (Capability::Setpcap, 8),
    (Capability::LinuxImmutable, 9),
    (Capability::NetBindService, 10),
    (Capability::NetBroadcast, 11),
    (Capability::NetAdmin, 12),
    (Capability::NetRaw, 13),
    (Capability::IpcLock, 14),
    (Capability::IpcOwner, 15),
    (Capability::SysModule, 16),
    (Capability::SysRawio, 17),
    (Capability::SysChroot, 18),
    (Capability::SysPtrace, 19),
    (Capability::SysPacct, 20),
    (Capability::SysAdmin, 21),
    (Capability::SysBoot, 22),
    (Capability::SysNice, 23),
    (Capability::SysResource, 24),
    (Capability::SysTime, 25),
    (Capability::SysTtyConfig, 26),
    (Capability::Mknod, 27),
    (Capability::Lease, 28),
    (Capability::AuditWrite, 29),
    (Capability::AuditControl, 30),
    (Capability::Setfcap, 31),
    (Capability::MacOverride, 32),
    (Capability::MacAdmin, 33),
    (Capability::Syslog, 34),
    (Capability::WakeAlarm, 35),
    (Capability::BlockSuspend, 36),
    (Capability::AuditRead, 37),
    (Capability::Perfmon, 38),
    (Capability::Bpf, 39),
    (Capability::CheckpointRestore, 40),
];

/// "Every capability" as containerd means it: those this process holds in its bounding set
/// (runc cannot grant one the node lacks, and would fail the container).
fn all_caps() -> Vec<Capability> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&line, 16).ok()
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .filter(|(_, bit)| bounding & (1u64 << bit) != 0)
        .map(|(c, _)| *c)
        .collect()
}

/// The uid, gid and supplementary groups of the container's process.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// What the bundle needs beyond the identity.
#[derive(Debug)]
pub struct Hardening {
    pub capabilities: Vec<Capability>,
    pub no_new_privileges: bool,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub seccomp: Option<LinuxSeccomp>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The image's account files (empty when absent), read inside the mounted rootfs.
fn account_files(rootfs: &Path) -> Result<(Vec<Passwd>, Vec<Group>), NodeError> {
    let root = confined::open_dir(rootfs)?;
    let read = |rel: &str| -> Result<String, NodeError> {
        let bytes = confined::read_in_root(&root, Path::new(rel), ACCOUNT_FILE_LIMIT)
            .map_err(|e| NodeError::Config(format!("reading {rel} of the image: {e}")))?;
        Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
    };
    Ok((passwd(&read("etc/passwd")?), groups(&read("etc/group")?)))
}

fn id(v: i64, what: &str) -> Result<u32, NodeError> {
    u32::try_from(v).map_err(|_| NodeError::Config(format!("{what} {v} is out of range")))
}

/// containerd's user resolution: `runAsUser`/`runAsGroup` win; else the image's USER
/// (`name`, `uid`, `name:group`, `uid:gid`; names looked up in the rootfs, an unknown name
/// refused); the gid defaults to the user's passwd entry (0 when it has none). The
/// supplementary groups are the primary one, the groups listing the user, then the pod's
/// supplementalGroups and fsGroup.
pub fn identity(
    rootfs: &Path,
    pod: &Pod,
    c: &Container,
    image_user: &str,
) -> Result<Identity, NodeError> {
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let (users, groups) = account_files(rootfs)?;
    let by_uid = |uid: u32| users.iter().find(|p| p.uid == uid);
    let (uid, mut gid) = match run_as_user {
        Some(u) => {
            let uid = id(u, "runAsUser")?;
            (uid, by_uid(uid).map_or(0, |p| p.gid))
        }
        None => {
            let (user, group) = match image_user.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (image_user, None),
            };
            let (uid, gid) = if user.is_empty() {
                (0, by_uid(0).map_or(0, |p| p.gid))
            } else if let Ok(uid) = user.parse::<u32>() {
                (uid, by_uid(uid).map_or(0, |p| p.gid))
            } else {
                let p = users.iter().find(|p| p.name == user).ok_or_else(|| {
                    NodeError::ContainerConfig(format!(
                        "unable to find user {user}: no matching entries in passwd file"
                    ))
                })?;
                (p.uid, p.gid)
            };
            let gid = match group.filter(|g| !g.is_empty()) {
                None => gid,
                Some(g) => match g.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => groups
                        .iter()
                        .find(|e| e.name == g)
                        .map(|e| e.gid)
                        .ok_or_else(|| {
                            NodeError::ContainerConfig(format!(
                                "unable to find group {g}: no matching entries in group file"
                            ))
                        })?,
                },
            };
            (uid, gid)
        }
    };
    if let Some(g) = run_as_group {
        gid = id(g, "runAsGroup")?;
    }
    let mut additional = vec![gid];
    if let Some(name) = by_uid(uid).map(|p| p.name.as_str()) {
        additional.extend(
            groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }
    let pod_groups = psc.into_iter().flat_map(|s| {
        s.supplemental_groups
            .iter()
            .flatten()
            .copied()
            .chain(s.fs_group)
    });
    for g in pod_groups {
        additional.push(id(g, "supplemental group")?);
    }
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(Identity {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// upstream's `format.Pod`: `name_namespace(uid)`.
fn pod_desc(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// kubelet's `verifyRunAsNonRoot`: with runAsNonRoot, the user must be known to be non-root
/// before the container is made (a named image user cannot be verified, as upstream).
pub fn verify_run_as_non_root(pod: &Pod, c: &Container, image_user: &str) -> Result<(), NodeError> {
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let desc = pod_desc(pod);
    let refuse = |why: String| Err(NodeError::ContainerConfig(why));
    if let Some(u) = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
    {
        if u == 0 {
            return refuse(format!(
                "container's runAsUser breaks non-root policy (pod: {desc:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    let user = image_user.split(':').next().unwrap_or_default();
    match user.parse::<i64>() {
        Ok(0) => refuse(format!(
            "container has runAsNonRoot and image will run as root (pod: {desc:?}, container: {})",
            c.name
        )),
        Ok(_) => Ok(()),
        Err(_) if user.is_empty() => refuse(format!(
            "container has runAsNonRoot and image will run as root (pod: {desc:?}, container: {})",
            c.name
        )),
        Err(_) => refuse(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {desc:?}, container: {})",
            c.name
        )),
    }
}

fn capability(name: &str) -> Result<Capability, NodeError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| NodeError::Config(format!("unknown capability {name:?}")))
}

/// The container's capability set: privileged gets all; else the default set with `add`
/// and `drop` applied as containerd does (`ALL` first, then the named ones), names with or
/// without `CAP_`.
fn capabilities(c: &Container, privileged: bool) -> Result<Vec<Capability>, NodeError> {
    if privileged {
        return Ok(all_caps());
    }
    let mut set = DEFAULT_CAPS.to_vec();
    let Some(caps) = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    else {
        return Ok(set);
    };
    let add = caps.add.as_deref().unwrap_or_default();
    let drop = caps.drop.as_deref().unwrap_or_default();
    let all = |l: &[String]| l.iter().any(|n| n.eq_ignore_ascii_case("ALL"));
    if all(add) {
        set = all_caps();
    }
    if all(drop) {
        set.clear();
    }
    for n in add.iter().filter(|n| !n.eq_ignore_ascii_case("ALL")) {
        let cap = capability(n)?;
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    for n in drop.iter().filter(|n| !n.eq_ignore_ascii_case("ALL")) {
        let cap = capability(n)?;
        set.retain(|c| *c != cap);
    }
    Ok(set)
}

/// The effective seccomp profile: the container's, else the pod's, else RuntimeDefault.
fn seccomp_profile(
    pod: &Pod,
    c: &Container,
    caps: &[Capability],
) -> Result<Option<LinuxSeccomp>, NodeError> {
    let own = c
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    let pod_level = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref());
    match own.or(pod_level).map(|p: &SeccompProfile| p.type_.as_str()) {
        Some("Unconfined") => Ok(None),
        None | Some("RuntimeDefault") => Ok(Some(seccomp::runtime_default(caps))),
        Some(other) => Err(NodeError::Config(format!(
            "seccomp profile type {other:?} is not supported on this node (RuntimeDefault or Unconfined)"
        ))),
    }
}

/// Capabilities, no-new-privileges (on unless allowPrivilegeEscalation is true or the
/// container is privileged), privileged, read-only root and seccomp (none when privileged).
pub fn hardening(pod: &Pod, c: &Container) -> Result<Hardening, NodeError> {
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);
    let escalation = sc.and_then(|s| s.allow_privilege_escalation) == Some(true);
    let capabilities = capabilities(c, privileged)?;
    let seccomp = if privileged {
        None
    } else {
        seccomp_profile(pod, c, &capabilities)?
    };
    Ok(Hardening {
        no_new_privileges: !(privileged || escalation),
        privileged,
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        seccomp,
        capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(sc: serde_json::Value, csc: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"securityContext": sc,
                     "containers": [{"name": "c", "securityContext": csc}]},
        }))
        .expect("pod");
        let c = pod.spec.as_ref().expect("spec").containers[0].clone();
        (pod, c)
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nweb:x:500:www-data\n",
        )
        .expect("group");
        dir
    }

    #[test]
    fn image_users_resolve_through_the_rootfs() {
        let root = rootfs();
        let (p, c) = pod(serde_json::json!({}), serde_json::json!({}));
        let who = |user: &str| identity(root.path(), &p, &c, user);
        let id = who("www-data").expect("named");
        assert_eq!(
            (id.uid, id.gid, id.additional_gids),
            (33, 33, vec![33, 500])
        );
        assert_eq!(who("www-data:web").expect("name:group").gid, 500);
        assert_eq!(who("1000").expect("numeric").uid, 1000);
        assert_eq!(who("").expect("root").uid, 0);
        assert!(matches!(
            who("nobody-here"),
            Err(NodeError::ContainerConfig(_))
        ));
        let (p2, c2) = pod(
            serde_json::json!({"runAsUser": 33, "supplementalGroups": [7]}),
            serde_json::json!({}),
        );
        let id = identity(root.path(), &p2, &c2, "").expect("runAsUser");
        assert_eq!((id.uid, id.gid), (33, 33));
        assert_eq!(id.additional_gids, vec![33, 500, 7]);
        // A passwd symlinked to the host's is resolved inside the rootfs, never on the host:
        // the host's root entry is not found.
        std::fs::remove_file(root.path().join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("etc/passwd")).expect("ln");
        assert!(who("root").is_err());
    }

    #[test]
    fn run_as_non_root_as_kubelet() {
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({}),
        );
        let err = verify_run_as_non_root(&p, &c, "").expect_err("root");
        assert_eq!(
            err.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        let err = verify_run_as_non_root(&p, &c, "www-data").expect_err("named");
        assert!(err.to_string().starts_with("container has runAsNonRoot and image has non-numeric user (www-data), cannot verify user is non-root"));
        verify_run_as_non_root(&p, &c, "33:33").expect("numeric non-root");
        let (p, c) = pod(
            serde_json::json!({"runAsNonRoot": true}),
            serde_json::json!({"runAsUser": 0}),
        );
        assert!(verify_run_as_non_root(&p, &c, "33").is_err());
    }

    #[test]
    fn capabilities_add_and_drop_as_containerd() {
        let (p, c) = pod(
            serde_json::json!({}),
            serde_json::json!({"capabilities": {"drop": ["ALL"], "add": ["CAP_CHOWN", "net_raw"]}}),
        );
        let h = hardening(&p, &c).expect("hardening");
        assert_eq!(h.capabilities, vec![Capability::Chown, Capability::NetRaw]);
        assert!(h.no_new_privileges && h.seccomp.is_some());
        let (p, c) = pod(
            serde_json::json!({"seccompProfile": {"type": "Unconfined"}}),
            serde_json::json!({"capabilities": {"add": ["ALL"], "drop": ["KILL"]}, "allowPrivilegeEscalation": true}),
        );
        let h = hardening(&p, &c).expect("hardening");
        assert_eq!(h.capabilities.len(), all_caps().len() - 1);
        assert!(!h.no_new_privileges && h.seccomp.is_none());
        let (p, c) = pod(
            serde_json::json!({}),
            serde_json::json!({"capabilities": {"add": ["BOGUS"]}}),
        );
        assert!(hardening(&p, &c).is_err());
    }
}
