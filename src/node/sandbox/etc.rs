//! The per-pod files bind-mounted into every container: `/etc/hosts` (the pod's own name and
//! IP, plus hostAliases), `/etc/hostname`, `/etc/resolv.conf`.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

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

/// `resolv.conf` for the pod: explicit nameservers, else the host's resolver file
/// (dnsPolicy ClusterFirst pointing at cluster DNS comes with the services issue).
fn resolv_conf(pod: &Pod, nameservers: &[String]) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    if nameservers.is_empty() {
        out.push_str(&host);
    } else {
        for ns in nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        for line in host
            .lines()
            .filter(|l| l.starts_with("search") || l.starts_with("options"))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(cfg) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        for ns in cfg.nameservers.iter().flatten() {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if let Some(search) = &cfg.searches {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
    }
    out
}

pub fn write_etc_files(
    dir: &Path,
    pod: &Pod,
    ip: &str,
    nameservers: &[String],
) -> std::io::Result<EtcFiles> {
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
    fs::write(&files.resolv, resolv_conf(pod, nameservers))?;
    Ok(files)
}
