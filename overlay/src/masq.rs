//! Pod egress masquerading with nftables (flannel's `--ip-masq` rules): traffic between pods
//! keeps its pod source address; pods reaching outside the cluster CIDR leave with the node's
//! address. One table, replaced atomically with `nft -f`.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::OverlayError;

pub const TABLE: &str = "skiff-overlay";

/// The whole table for this node's subnet inside the cluster CIDR.
pub fn ruleset(cluster: Ipv4Net, pod: Ipv4Net) -> String {
    format!(
        "add table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x4000 == 0x4000 return comment \"the service proxy masquerades these\"
		ip saddr {pod} ip daddr {cluster} return
		ip saddr {cluster} ip daddr {pod} return
		ip saddr != {cluster} ip daddr {pod} return
		ip saddr {cluster} ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != {cluster} ip daddr {cluster} masquerade fully-random
	}}
}}
"
    )
}

pub fn apply(rules: &str) -> Result<(), OverlayError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| OverlayError::Nft(format!("running nft (install nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(rules.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(OverlayError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_to_pod_keeps_its_source_and_egress_is_masqueraded() {
        let r = ruleset(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.3.0/24".parse().unwrap(),
        );
        let rules: Vec<&str> = r.lines().map(str::trim).collect();
        let keep = rules
            .iter()
            .position(|l| *l == "ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return")
            .expect("pod to pod returns");
        let masq = rules
            .iter()
            .position(|l| {
                l.starts_with("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade")
            })
            .expect("egress masquerades");
        assert!(keep < masq, "the pod-to-pod exception comes first");
        assert!(r.starts_with("add table ip skiff-overlay\ndelete table ip skiff-overlay\n"));
    }
}
