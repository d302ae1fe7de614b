//! Kubernetes helpers every component shares and that import none of them (the bottom
//! layer): quantities and label selectors so far.

pub mod quantity;
pub mod selector;
