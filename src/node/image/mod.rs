//! Images: pulled from OCI registries (oci-client) or imported from tarballs, blobs kept by
//! digest, layers unpacked once into a content-addressed store shared by every container.

mod import;
mod pull;
mod store;
pub mod unpack;

use thiserror::Error;

pub use store::{ImageConfig, ImageRecord, ImageStore};

#[derive(Debug, Error)]
pub enum ImageError {
    /// The registry says there is no such image (or tag); its message is kept.
    #[error("{0}")]
    NotFound(String),
    #[error("pulling {reference}: {message}")]
    Pull { reference: String, message: String },
    #[error("invalid image: {0}")]
    Invalid(String),
    #[error("image store: {0}")]
    Io(#[from] std::io::Error),
}
