//! Skiff: a small, fast, Kubernetes-compatible container orchestrator.

pub mod api;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod metrics;
pub mod store;
