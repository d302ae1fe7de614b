//! Pulling from a registry with oci-client: manifest and config, then the layers not in the
//! store yet (oci-client checks each blob against its digest while streaming).

use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::store::ImageStore;
use super::{ImageError, ImageRecord};

fn pull_error(reference: &str, e: oci_client::errors::OciDistributionError) -> ImageError {
    let message = e.to_string();
    let lower = message.to_lowercase();
    if lower.contains("not found")
        || lower.contains("manifest unknown")
        || lower.contains("name unknown")
    {
        return ImageError::NotFound(format!("failed to pull image {reference:?}: {message}"));
    }
    ImageError::Pull {
        reference: reference.to_string(),
        message,
    }
}

impl ImageStore {
    pub async fn pull(self: &Arc<Self>, reference: &str) -> Result<ImageRecord, ImageError> {
        let r: Reference = reference
            .parse()
            .map_err(|e| ImageError::Invalid(format!("reference {reference:?}: {e}")))?;
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            ..Default::default()
        });
        let auth = RegistryAuth::Anonymous;
        let (manifest, digest, config) = client
            .pull_manifest_and_config(&r, &auth)
            .await
            .map_err(|e| pull_error(reference, e))?;
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            let path = self.blob_path(&layer.digest)?;
            if !path.exists() {
                let tmp = path.with_extension("part");
                let file = tokio::fs::File::create(&tmp).await?;
                client
                    .pull_blob(&r, layer, file)
                    .await
                    .map_err(|e| pull_error(reference, e))?;
                tokio::fs::rename(&tmp, &path).await?;
            }
            layers.push(layer.digest.clone());
        }
        let reference = r.whole();
        let config = config.into_bytes();
        // Unpacking is blocking work; the agent runs on a single-threaded runtime.
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || store.register(&reference, &digest, &config, &layers))
            .await
            .map_err(|e| ImageError::Invalid(format!("unpacking: {e}")))?
    }
}
