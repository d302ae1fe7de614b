//! The per-pod files bind-mounted into every container: `/etc/hosts` (the pod's own name and
//! IP, plus hostAliases), `/etc/hostname`, `/etc/resolv.conf`.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use crate::dns::resolv::{pod_resolv_conf, PodDns, ResolvConf};

pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv: PathBuf,
}

/// The pod's hostname: `spec.hostname` or the pod name, as upstream.
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

/// `resolv.conf` for the pod by its dnsPolicy and dnsConfig (cluster DNS for ClusterFirst
/// when the node has one, else the node's resolvers).
fn resolv_conf(pod: &Pod, dns: &PodDns) -> String {
    pod_resolv_conf(pod, dns, &ResolvConf::host_for_pods()).render()
}

pub fn write_etc_files(dir: &Path, pod: &Pod, ip: &str, dns: &PodDns) -> std::io::Result<EtcFiles> {
    fs::create_dir_all(dir)?;
    let name = hostname(pod);
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !ip.is_empty() {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    for alias in pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        hosts.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    let files = EtcFiles {
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
        resolv: dir.join("resolv.conf"),
    };
    fs::write(&files.hosts, hosts)?;
    fs::write(&files.hostname, format!("{name}\n"))?;
    fs::write(&files.resolv, resolv_conf(pod, dns))?;
    Ok(files)
}
