//! A node's subnet lease as the overlay sees it: `spec.podCIDR` plus the backend data the
//! node's overlay agent published as annotations (flannel's kube subnet manager keeps the
//! same three facts under `flannel.alpha.coreos.com/`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::config::BackendKind;

pub const BACKEND_TYPE: &str = "overlay.skiff.io/backend-type";
pub const BACKEND_DATA: &str = "overlay.skiff.io/backend-data";
pub const PUBLIC_IP: &str = "overlay.skiff.io/public-ip";

/// `backend-data` of the VXLAN backends (flannel's JSON shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC", with = "mac_text")]
    pub vtep_mac: [u8; 6],
}

/// Another node, as far as the datapath needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub backend: BackendKind,
    /// For the VXLAN backends.
    pub vxlan: Option<VxlanData>,
}

impl Peer {
    /// The peer's VTEP address: the network address of its subnet (`.0`, flannel's choice, so
    /// no broadcast route is made for it).
    pub fn vtep_ip(&self) -> Ipv4Addr {
        self.subnet.network()
    }
}

/// The annotations this node publishes.
pub fn annotations(
    backend: BackendKind,
    public_ip: Ipv4Addr,
    vxlan: Option<VxlanData>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(BACKEND_TYPE.to_string(), backend.as_str().to_string());
    a.insert(PUBLIC_IP.to_string(), public_ip.to_string());
    if let Some(data) = vxlan {
        a.insert(
            BACKEND_DATA.to_string(),
            serde_json::to_string(&data).unwrap_or_default(),
        );
    }
    a
}

/// The node's subnet, if it has a valid IPv4 one.
pub fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()
}

/// A node whose agent has published complete backend data; `None` for a node that is not
/// (yet) part of the overlay or published something unusable.
pub fn peer(node: &Node) -> Option<Peer> {
    let a = node.metadata.annotations.as_ref()?;
    let backend = BackendKind::parse(a.get(BACKEND_TYPE)?)?;
    let vxlan = match backend {
        BackendKind::HostGw => None,
        _ => Some(serde_json::from_str::<VxlanData>(a.get(BACKEND_DATA)?).ok()?),
    };
    Some(Peer {
        name: node.metadata.name.clone()?,
        subnet: pod_cidr(node)?.trunc(),
        public_ip: a.get(PUBLIC_IP)?.parse().ok()?,
        backend,
        vxlan,
    })
}

/// A random locally administered unicast MAC (flannel's VTEP MACs are the same kind).
pub fn random_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_mac(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_mac(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("bad MAC address {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(annotations: BTreeMap<String, String>, cidr: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n2".into());
        n.metadata.annotations = Some(annotations);
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some(cidr.into()),
            ..Default::default()
        });
        n
    }

    #[test]
    fn published_vxlan_data_reads_back_as_a_peer() {
        let mac = random_mac();
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
        let data = VxlanData {
            vni: 1,
            vtep_mac: mac,
        };
        let a = annotations(BackendKind::Vxlan, Ipv4Addr::new(10, 90, 0, 12), Some(data));
        assert_eq!(
            a[BACKEND_DATA],
            format!(r#"{{"VNI":1,"VtepMAC":"{}"}}"#, format_mac(&mac))
        );
        let p = peer(&node(a, "10.244.2.0/24")).expect("peer");
        assert_eq!(p.vxlan, Some(data));
        assert_eq!(p.public_ip, Ipv4Addr::new(10, 90, 0, 12));
        assert_eq!(p.vtep_ip(), Ipv4Addr::new(10, 244, 2, 0));
    }

    #[test]
    fn incomplete_or_bad_annotations_are_not_a_peer() {
        let data = VxlanData {
            vni: 1,
            vtep_mac: [2, 0, 0, 0, 0, 1],
        };
        let full = annotations(BackendKind::Vxlan, Ipv4Addr::new(10, 90, 0, 12), Some(data));
        let mut no_data = full.clone();
        no_data.remove(BACKEND_DATA);
        assert!(peer(&node(no_data, "10.244.2.0/24")).is_none());
        let mut bad_mac = full.clone();
        bad_mac.insert(BACKEND_DATA.into(), r#"{"VNI":1,"VtepMAC":"zz"}"#.into());
        assert!(peer(&node(bad_mac, "10.244.2.0/24")).is_none());
        assert!(peer(&node(full.clone(), "not-a-cidr")).is_none());
        let hostgw = annotations(BackendKind::HostGw, Ipv4Addr::new(10, 90, 0, 13), None);
        assert_eq!(
            peer(&node(hostgw, "10.244.3.0/24")).map(|p| p.backend),
            Some(BackendKind::HostGw)
        );
    }
}
