//! The node agent: the `Kubelet` actor and the container runtime it drives.

pub mod config;
pub mod image;
pub mod layout;
pub mod server;

pub use config::NodeConfig;
pub use layout::{ContainerRecord, NodeDirs, PodRecord};
