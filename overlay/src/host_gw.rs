//! The host-gw backend: a plain route to each remote subnet via the remote node's underlay
//! address. No encapsulation, so every node must be on one L2 segment.

use rtnetlink::Handle;

use crate::device::{self, Route};
use crate::lease::Peer;
use crate::underlay::Underlay;
use crate::OverlayError;

/// The routes for `peers`; a peer whose underlay address is not directly reachable on the
/// underlay interface is an error (the others still get their routes).
pub async fn routes(
    h: &Handle,
    u: &Underlay,
    peers: &[&Peer],
) -> (Vec<Route>, Option<OverlayError>) {
    let mut out = Vec::new();
    let mut err = None;
    for p in peers {
        match device::route_to(h, p.public_ip).await {
            Ok((None, Some(oif))) if oif == u.index => out.push(Route {
                dst: p.subnet,
                gateway: Some(p.public_ip),
                oif: Some(u.index),
                onlink: false,
            }),
            Ok(_) => {
                err = Some(OverlayError::NotOnLink(format!(
                    "node {} ({}) is not directly reachable on {}: host-gw needs all nodes on one L2 segment (use the vxlan backend)",
                    p.name, p.public_ip, u.name
                )))
            }
            Err(e) => err = Some(e),
        }
    }
    (out, err)
}
