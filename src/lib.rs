//! Skiff: a small, fast, Kubernetes-compatible container orchestrator.

pub mod api;
pub mod chart;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod dns;
pub mod fuzz_targets;
pub mod ingress;
pub mod k8s;
pub mod lab;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod proxy;
pub mod reflect;
pub mod scheduler;
pub mod store;

/// The current time as Kubernetes writes it (RFC 3339, seconds).
pub fn api_time_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
