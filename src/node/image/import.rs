//! `skiff image import`: images from a tar file, either an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`, as written by `skopeo copy ... oci-archive:` or
//! `docker save` since Docker 25) or a `docker save` archive (`manifest.json` listing each
//! image's config file, `RepoTags` and uncompressed layer tars).
//!
//! The archive is unpacked into a staging directory inside the store (same filesystem, so
//! blobs are renamed into place) and every blob is checked against its digest before anything
//! moves; references are saved only once every image's layers are unpacked and checked, so a
//! bad archive leaves the store's references as they were.
//!
//! Image IDs: for an OCI layout, the manifest digest. A docker-archive carries no manifest, so
//! its ID is the digest of the OCI manifest describing its blobs as they are (the config and the
//! uncompressed layers), serialized by `oci-spec`: stable for a given archive, but not the
//! registry digest of the same image (whose layers are compressed).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex,
    ImageManifest, ImageManifestBuilder, MediaType, OciLayout, ANNOTATION_REF_NAME,
};
use serde::Deserialize;
use tracing::info;

use super::store::{self, normalize, ImageStore};
use super::unpack::{safe, sha256_hex};
use super::{ImageError, ImageRecord};

/// containerd (and Docker 25+) put the full reference here; `ref.name` then holds the tag.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Nested indexes followed at most (an index of per-platform manifests is one level).
const MAX_INDEX_DEPTH: usize = 4;
const MAX_LINK_HOPS: usize = 16;

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

/// One image found in an archive, its layer blobs still in the staging directory.
struct Found {
    /// Full references (normalized).
    names: Vec<String>,
    /// Names in the archive that are only a tag (no repository).
    tags: Vec<String>,
    digest: String,
    config: Vec<u8>,
    /// (staged file, blob digest), bottom first.
    layers: Vec<(PathBuf, String)>,
}

impl Found {
    fn short(&self) -> &str {
        let hex = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        hex.get(..12).unwrap_or(hex)
    }

    fn add_names(&mut self, (name, tag): (Option<String>, Option<String>)) {
        if let Some(n) = name.filter(|n| !self.names.contains(n)) {
            self.names.push(n);
        }
        if let Some(t) = tag.filter(|t| !self.tags.contains(t)) {
            self.tags.push(t);
        }
    }
}

/// The archive's files under a directory of the store, removed on drop.
struct Staging {
    dir: PathBuf,
    /// Symbolic and hard links: archive path -> archive path of the target.
    links: HashMap<PathBuf, PathBuf>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `a/b/../c` -> `a/c`; `None` if it leaves the archive.
fn lexical(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Staging {
    fn unpack(archive: &Path, dir: PathBuf) -> Result<Staging, ImageError> {
        let read_err = |e: io::Error| invalid(format!("reading {}: {e}", archive.display()));
        let mut head = [0u8; 2];
        let mut file = fs::File::open(archive).map_err(read_err)?;
        let gz = file.read(&mut head).map_err(read_err)? == 2 && head == [0x1f, 0x8b];
        let file = fs::File::open(archive).map_err(read_err)?;
        // `docker save | gzip` is common enough to accept.
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        fs::create_dir_all(&dir)?;
        let mut staging = Staging {
            dir,
            links: HashMap::new(),
        };
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw = entry.path().map_err(read_err)?.into_owned();
            let rel = safe(&raw)
                .ok_or_else(|| invalid(format!("archive entry escapes it: {}", raw.display())))?;
            if rel.as_os_str().is_empty() {
                continue; // `./`
            }
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let dest = staging.dir.join(&rel);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut out = fs::File::create(&dest)?;
                io::copy(&mut entry, &mut out).map_err(read_err)?;
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| invalid(format!("link without target: {}", rel.display())))?;
                // Symbolic links are relative to their directory, hard links to the root.
                let base = if kind.is_symlink() {
                    rel.parent().unwrap_or(Path::new("")).to_path_buf()
                } else {
                    PathBuf::new()
                };
                let target = lexical(&base.join(&target)).ok_or_else(|| {
                    invalid(format!("archive link escapes it: {}", rel.display()))
                })?;
                staging.links.insert(rel, target);
            }
            // Directories are made as needed; other entry types carry nothing we read.
        }
        Ok(staging)
    }

    /// The staged file for an archive path, following links.
    fn file(&self, name: &str) -> Result<PathBuf, ImageError> {
        let mut rel = lexical(Path::new(name))
            .ok_or_else(|| invalid(format!("archive path escapes it: {name}")))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&rel) {
                Some(target) => rel = target.clone(),
                None => {
                    let path = self.dir.join(&rel);
                    if !path.is_file() {
                        return Err(invalid(format!("archive has no file {name}")));
                    }
                    return Ok(path);
                }
            }
        }
        Err(invalid(format!("too many links resolving {name}")))
    }

    /// A blob of an OCI layout, checked against its descriptor's size and digest.
    fn blob(&self, desc: &Descriptor) -> Result<PathBuf, ImageError> {
        let digest = desc.digest();
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(invalid(format!("unsupported digest {digest}")));
        }
        let path = self.file(&format!("blobs/sha256/{}", digest.digest()))?;
        let size = fs::metadata(&path)?.len();
        if size != desc.size() {
            return Err(invalid(format!(
                "blob {digest}: {size} bytes, its descriptor says {}",
                desc.size()
            )));
        }
        store::verify(&path, digest.as_ref())?;
        Ok(path)
    }
}

/// The architecture name OCI uses for this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Whether a name from an archive is only a tag (`latest`), not a reference with a repository.
fn is_bare_tag(name: &str) -> bool {
    !name.contains(['/', ':', '@'])
}

/// (full reference, bare tag) from an index descriptor's annotations.
fn names_of(desc: &Descriptor) -> Result<(Option<String>, Option<String>), ImageError> {
    let Some(a) = desc.annotations() else {
        return Ok((None, None));
    };
    let ref_name = a.get(ANNOTATION_REF_NAME);
    if let Some(full) = a.get(CONTAINERD_NAME) {
        return Ok((Some(normalize(full)?), ref_name.cloned()));
    }
    match ref_name {
        Some(r) if is_bare_tag(r) => Ok((None, Some(r.clone()))),
        Some(r) => Ok((Some(normalize(r)?), None)),
        None => Ok((None, None)),
    }
}

fn json<T>(what: &str, parsed: Result<T, oci_spec::OciSpecError>) -> Result<T, ImageError> {
    parsed.map_err(|e| invalid(format!("{what}: {e}")))
}

/// Follows a descriptor from `index.json` to an image manifest (through per-platform indexes,
/// choosing this host's platform); returns its digest and the manifest.
fn manifest_of(
    st: &Staging,
    desc: &Descriptor,
    depth: usize,
) -> Result<(String, ImageManifest), ImageError> {
    let path = st.blob(desc)?;
    let digest = desc.digest().to_string();
    let media = desc.media_type().to_string();
    if *desc.media_type() == MediaType::ImageIndex || media == DOCKER_MANIFEST_LIST {
        if depth >= MAX_INDEX_DEPTH {
            return Err(invalid(format!("index {digest}: nested too deep")));
        }
        let index = json(&format!("index {digest}"), ImageIndex::from_file(&path))?;
        let arch = host_arch();
        let pick = index
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == arch
                })
            })
            .ok_or_else(|| invalid(format!("index {digest} has no image for linux/{arch}")))?;
        return manifest_of(st, pick, depth + 1);
    }
    if *desc.media_type() != MediaType::ImageManifest && media != DOCKER_MANIFEST {
        return Err(invalid(format!(
            "{digest}: unsupported manifest media type {media}"
        )));
    }
    let manifest = json(
        &format!("manifest {digest}"),
        ImageManifest::from_file(&path),
    )?;
    Ok((digest, manifest))
}

fn oci_images(st: &Staging) -> Result<Vec<Found>, ImageError> {
    let layout = json("oci-layout", OciLayout::from_file(st.file("oci-layout")?))?;
    if !layout.image_layout_version().starts_with("1.") {
        return Err(invalid(format!(
            "unsupported OCI layout version {}",
            layout.image_layout_version()
        )));
    }
    let index = json("index.json", ImageIndex::from_file(st.file("index.json")?))?;
    let mut found: Vec<Found> = Vec::new();
    for desc in index.manifests() {
        let names = names_of(desc)?;
        let (digest, manifest) = manifest_of(st, desc, 0)?;
        if let Some(f) = found.iter_mut().find(|f| f.digest == digest) {
            f.add_names(names);
            continue;
        }
        let config = fs::read(st.blob(manifest.config())?)?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let media = l.media_type().to_string();
            if media.contains("zstd") {
                return Err(invalid(format!(
                    "layer {}: zstd layers are not supported",
                    l.digest()
                )));
            }
            layers.push((st.blob(l)?, l.digest().to_string()));
        }
        let mut f = Found {
            names: Vec::new(),
            tags: Vec::new(),
            digest,
            config,
            layers,
        };
        f.add_names(names);
        found.push(f);
    }
    Ok(found)
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a docker-archive file name claims: `<hex>.json`, `<hex>.tar`, `blobs/sha256/<hex>`
/// (not `<id>/layer.tar`, whose id is not a content digest).
fn claimed_digest(name: &str) -> Option<String> {
    let file = Path::new(name).file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".json")
        .or_else(|| file.strip_suffix(".tar"))
        .unwrap_or(file);
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", stem.to_ascii_lowercase()))
}

fn is_gzip(path: &Path) -> Result<bool, ImageError> {
    let mut head = [0u8; 2];
    Ok(fs::File::open(path)?.read(&mut head)? == 2 && head == [0x1f, 0x8b])
}

fn descriptor(media: MediaType, digest: &str, size: u64) -> Result<Descriptor, ImageError> {
    let digest = Digest::from_str(digest).map_err(|e| invalid(format!("{digest}: {e}")))?;
    DescriptorBuilder::default()
        .media_type(media)
        .digest(digest)
        .size(size)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

fn docker_images(st: &Staging) -> Result<Vec<Found>, ImageError> {
    let text = fs::read(st.file("manifest.json")?)?;
    let images: Vec<DockerImage> =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let mut found = Vec::new();
    for image in images {
        let config_path = st.file(&image.config)?;
        let config_digest = match claimed_digest(&image.config) {
            Some(d) => {
                store::verify(&config_path, &d)?;
                d
            }
            None => format!("sha256:{}", store::file_sha256(&config_path)?),
        };
        let config = fs::read(&config_path)?;
        let cfg = json(
            &format!("image config {}", image.config),
            ImageConfiguration::from_reader(&config[..]),
        )?;
        let diff_ids = cfg.rootfs().diff_ids();
        if diff_ids.len() != image.layers.len() {
            return Err(invalid(format!(
                "{}: {} layers but {} diff_ids in its config",
                image.config,
                image.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        for (name, diff_id) in image.layers.iter().zip(diff_ids) {
            let path = st.file(name)?;
            let (digest, media) = if is_gzip(&path)? {
                // Checked against the diff_id when unpacked.
                let digest = match claimed_digest(name) {
                    Some(d) => {
                        store::verify(&path, &d)?;
                        d
                    }
                    None => format!("sha256:{}", store::file_sha256(&path)?),
                };
                (digest, MediaType::ImageLayerGzip)
            } else {
                // An uncompressed layer's digest is its diff_id.
                store::verify(&path, diff_id).map_err(|e| match e {
                    ImageError::Invalid(m) => invalid(format!("layer {name}: {m}")),
                    e => e,
                })?;
                (diff_id.clone(), MediaType::ImageLayer)
            };
            descriptors.push(descriptor(media, &digest, fs::metadata(&path)?.len())?);
            layers.push((path, digest));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                MediaType::ImageConfig,
                &config_digest,
                config.len() as u64,
            )?)
            .layers(descriptors)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let bytes = manifest.to_string().map_err(|e| invalid(e.to_string()))?;
        let mut f = Found {
            names: Vec::new(),
            tags: Vec::new(),
            digest: format!("sha256:{}", sha256_hex(bytes.as_bytes())),
            config,
            layers,
        };
        for tag in image.repo_tags.unwrap_or_default() {
            f.add_names((Some(normalize(&tag)?), None));
        }
        found.push(f);
    }
    Ok(found)
}

impl ImageStore {
    /// Imports every image of an OCI layout or docker-archive tar (gzipped or not). `name`
    /// names the image instead of the archive's own names (the archive must then hold exactly
    /// one image); it is needed when the archive names an image only by a tag.
    pub fn import(
        &self,
        archive: &Path,
        name: Option<&str>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let name = name.map(normalize).transpose()?;
        let tmp = self.dir().join("tmp");
        let st = Staging::unpack(
            archive,
            tmp.join(format!("import-{}", uuid::Uuid::new_v4().simple())),
        )?;
        let oci = st.file("index.json").is_ok();
        let mut found = if oci {
            oci_images(&st)?
        } else if st.file("manifest.json").is_ok() {
            docker_images(&st)?
        } else {
            return Err(invalid(format!(
                "{}: neither an OCI image layout (index.json) nor a docker-archive (manifest.json)",
                archive.display()
            )));
        };
        if found.is_empty() {
            return Err(invalid(format!("{}: no images in it", archive.display())));
        }
        match name {
            Some(n) => {
                if found.len() != 1 {
                    return Err(invalid(format!(
                        "a name can only be given to an archive of one image; {} holds {}",
                        archive.display(),
                        found.len()
                    )));
                }
                found[0].names = vec![n];
            }
            None => {
                for f in &found {
                    if !f.names.is_empty() {
                        continue;
                    }
                    return Err(match f.tags.first() {
                        Some(t) => invalid(format!(
                            "image {} is named only by the tag {t:?}, without a repository: give a reference with --name (e.g. example.com/app:{t})",
                            f.short()
                        )),
                        None => invalid(format!(
                            "image {} has no name: give a reference with --name",
                            f.short()
                        )),
                    });
                }
            }
        }
        // Every blob is verified: move the layers in (a blob already there is the same bytes).
        for f in &found {
            for (staged, digest) in &f.layers {
                let dest = self.blob_path(digest)?;
                if !dest.exists() {
                    fs::rename(staged, &dest)?;
                }
            }
        }
        let mut records = Vec::new();
        for f in &found {
            let layers: Vec<String> = f.layers.iter().map(|(_, d)| d.clone()).collect();
            for n in &f.names {
                records.push(self.prepare(n, &f.digest, &f.config, &layers)?);
            }
        }
        self.save(&records)?;
        for r in &records {
            info!(reference = %r.reference, digest = %r.digest, archive = %archive.display(), "imported image");
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tags_and_references() {
        assert!(is_bare_tag("latest"));
        assert!(is_bare_tag("v1.2"));
        assert!(!is_bare_tag("busybox:latest"));
        assert!(!is_bare_tag("example.com/app"));
        assert!(!is_bare_tag("app@sha256:abcd"));
    }

    #[test]
    fn claimed_digests() {
        let hex = "855ab3b6d9df30d228d05917877a37a362db7dec725f0c9a0fc5ec07b6083e29";
        let want = Some(format!("sha256:{hex}"));
        assert_eq!(claimed_digest(&format!("{hex}.tar")), want);
        assert_eq!(claimed_digest(&format!("{hex}.json")), want);
        assert_eq!(claimed_digest(&format!("blobs/sha256/{hex}")), want);
        assert_eq!(claimed_digest(&format!("{hex}/layer.tar")), None);
        assert_eq!(claimed_digest("config.json"), None);
    }

    #[test]
    fn links_stay_inside() {
        assert_eq!(lexical(Path::new("a/../b/./c")), Some(PathBuf::from("b/c")));
        assert_eq!(lexical(Path::new("../x")), None);
        assert_eq!(lexical(Path::new("/etc/passwd")), None);
    }
}
