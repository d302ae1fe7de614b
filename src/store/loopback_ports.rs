//! Loopback ports for servers that tests and benchmarks start on one machine.
//!
//! A port learnt by binding `127.0.0.1:0` and releasing it comes from the kernel's ephemeral
//! range, where the next outgoing connection or another `bind(0)` may take it before the
//! server binds it ("Address already in use"). Ports here come from below that range, which
//! the kernel never hands out on its own, through one counter per process, so two callers in
//! one process never get the same port either.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports below this are left to system services.
const LOWEST: u32 = 10_000;

/// The ports the kernel does not pick on its own: below `ip_local_port_range`, or above it
/// when that starts too low.
fn unassigned_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u32>);
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    if lo >= LOWEST + 1_000 {
        Some((LOWEST, lo))
    } else if hi + 1_000 <= 65_535 {
        Some((hi + 1, 65_536))
    } else {
        None
    }
}

/// `n` distinct loopback TCP ports that were free when chosen and are not in the ephemeral
/// range (falls back to kernel-chosen ports when the range leaves no room).
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((lo, hi)) = unassigned_range() else {
        return kernel_chosen(n);
    };
    let span = hi - lo;
    // Processes start at different places, so one that follows another right away does not
    // reuse the ports its predecessor's servers may still be closing.
    let start = std::process::id().wrapping_mul(7_919) % span;
    let mut held = Vec::with_capacity(n);
    let mut tried = 0;
    while held.len() < n {
        if tried == span {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("no free loopback port in {lo}..{hi}"),
            ));
        }
        tried += 1;
        let port = lo + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        // Free now; kept bound until all are found so none is handed out twice.
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(l);
        }
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn kernel_chosen(n: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports = free_loopback_ports(50).expect("ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 50, "duplicates in {ports:?}");
        let again = free_loopback_ports(50).expect("ports");
        assert!(again.iter().all(|p| !ports.contains(p)), "handed out twice");
        if let Some((lo, hi)) = unassigned_range() {
            for p in ports.iter().chain(&again) {
                assert!((lo..hi).contains(&u32::from(*p)), "{p} outside {lo}..{hi}");
            }
        }
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }
}
