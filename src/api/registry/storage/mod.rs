//! The storage.k8s.io group.

pub mod csi;
pub mod storageclass;
