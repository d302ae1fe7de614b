//! Encryption at rest (kube-apiserver's `EncryptionConfiguration` with the `aesgcm` provider).
//!
//! Values of the keys under [`ENCRYPTED_PREFIXES`] are encrypted by the client before they are
//! proposed, so the Raft log, the raft-engine files and the snapshots only ever hold ciphertext.
//! Stored form: `k8s:enc:aesgcm:v1:<keyname>:` + 12-byte random nonce + AES-256-GCM ciphertext
//! and tag, with the store key as additional authenticated data (a value copied under another
//! key does not decrypt).
//!
//! Keys are named; the first one encrypts new writes, any of them decrypts (the name in the
//! value says which). Rotation: put a new key first and keep the old ones after it. Values
//! without the prefix (written before encryption was on) are read as they are and encrypted on
//! their next write.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use super::error::StoreError;
use super::state_machine::{Event, KeyValue, Op, TxnResponse};

/// Store key prefixes whose values are encrypted (upstream's `resources: [secrets]`).
pub const ENCRYPTED_PREFIXES: &[&str] = &["/registry/secrets/"];

/// Every encrypted value starts with this, then the key name and `:`.
pub const VALUE_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// Bytes of a key (AES-256).
pub const KEY_LEN: usize = 32;

/// Name of the key generated when the configuration names none.
pub const GENERATED_KEY_NAME: &str = "key1";

const TAG_LEN: usize = 16;

#[derive(Debug, Error)]
pub enum EncryptionError {
    /// A configured key (`name:base64`) is not usable; the reason never contains key material.
    #[error("{0}")]
    InvalidKey(String),
    #[error("no encryption key configured")]
    NoKeys,
    #[error("value of {key} is encrypted with key {name:?}, which is not configured")]
    UnknownKey { key: String, name: String },
    #[error("value of {key} does not decrypt (wrong key, tampered, or stored under another key)")]
    Decrypt { key: String },
    #[error("value of {key} is not a well-formed encrypted value")]
    Malformed { key: String },
    #[error("encrypting the value of {key} failed")]
    Encrypt { key: String },
    #[error("encryption keys file {path}: {reason}")]
    KeysFile { path: PathBuf, reason: String },
}

impl From<EncryptionError> for StoreError {
    fn from(e: EncryptionError) -> Self {
        StoreError::Transformation(e.to_string())
    }
}

struct NamedKey {
    name: String,
    key: LessSafeKey,
}

/// An ordered list of named AES-256-GCM keys: the first encrypts, all decrypt.
pub struct Transformer {
    keys: Vec<NamedKey>,
    rng: SystemRandom,
}

impl fmt::Debug for Transformer {
    /// Key names only, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transformer")
            .field("keys", &self.key_names())
            .finish()
    }
}

/// True when values of `store_key` are encrypted at rest.
pub fn applies_to(store_key: &str) -> bool {
    ENCRYPTED_PREFIXES.iter().any(|p| store_key.starts_with(p))
}

/// True when keys under `prefix` may be encrypted (a watch or list of it may see them).
pub fn may_contain_encrypted(prefix: &str) -> bool {
    ENCRYPTED_PREFIXES
        .iter()
        .any(|p| p.starts_with(prefix) || prefix.starts_with(p))
}

/// True when `value` is in the encrypted form (whatever the key).
pub fn is_encrypted(value: &[u8]) -> bool {
    value.starts_with(VALUE_PREFIX)
}

fn check_name(name: &str) -> Result<(), EncryptionError> {
    if name.is_empty() {
        return Err(EncryptionError::InvalidKey("a key name is empty".into()));
    }
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(EncryptionError::InvalidKey(format!(
            "key name {name:?} must not contain ':', spaces or control characters"
        )));
    }
    Ok(())
}

/// Parses one `name:base64` key (32 bytes once decoded).
pub fn parse_key(spec: &str) -> Result<(String, [u8; KEY_LEN]), EncryptionError> {
    let (name, b64) = spec.trim().split_once(':').ok_or_else(|| {
        EncryptionError::InvalidKey("an entry is not NAME:BASE64 (no ':')".into())
    })?;
    check_name(name)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| EncryptionError::InvalidKey(format!("key {name:?} is not valid base64")))?;
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        EncryptionError::InvalidKey(format!(
            "key {name:?} decodes to {} bytes, not {KEY_LEN}",
            bytes.len()
        ))
    })?;
    Ok((name.to_string(), key))
}

/// Parses a list of `name:base64` keys: at least one, names unique.
pub fn parse_keys<S: AsRef<str>>(
    specs: &[S],
) -> Result<Vec<(String, [u8; KEY_LEN])>, EncryptionError> {
    let keys = specs
        .iter()
        .map(|s| parse_key(s.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    check_keys(&keys)?;
    Ok(keys)
}

fn check_keys(keys: &[(String, [u8; KEY_LEN])]) -> Result<(), EncryptionError> {
    if keys.is_empty() {
        return Err(EncryptionError::NoKeys);
    }
    let mut seen = BTreeSet::new();
    for (name, _) in keys {
        check_name(name)?;
        if !seen.insert(name.as_str()) {
            return Err(EncryptionError::InvalidKey(format!(
                "key name {name:?} is used twice"
            )));
        }
    }
    Ok(())
}

/// Formats a key as a config entry / keys-file line, `name:base64`.
pub fn format_key(name: &str, key: &[u8; KEY_LEN]) -> String {
    format!(
        "{name}:{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// A new random key.
pub fn random_key() -> Result<[u8; KEY_LEN], EncryptionError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| EncryptionError::InvalidKey("no randomness for a new key".into()))?;
    Ok(key)
}

impl Transformer {
    /// Keys in order: the first encrypts new writes. Names must be unique.
    pub fn new(keys: Vec<(String, [u8; KEY_LEN])>) -> Result<Self, EncryptionError> {
        check_keys(&keys)?;
        let keys = keys
            .into_iter()
            .map(|(name, bytes)| {
                let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
                    EncryptionError::InvalidKey(format!("key {name:?} is not an AES-256 key"))
                })?;
                Ok(NamedKey {
                    name,
                    key: LessSafeKey::new(unbound),
                })
            })
            .collect::<Result<Vec<_>, EncryptionError>>()?;
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// One random key named `key1` (in-process clusters, tests).
    pub fn generate() -> Result<Self, EncryptionError> {
        Self::new(vec![(GENERATED_KEY_NAME.to_string(), random_key()?)])
    }

    /// The key names, the writing one first.
    pub fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name.as_str()).collect()
    }

    /// The stored form of `value` for `store_key`: encrypted with the first key when the key
    /// is one of [`ENCRYPTED_PREFIXES`], else unchanged.
    pub fn to_storage(&self, store_key: &str, value: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
        if !applies_to(store_key) {
            return Ok(value);
        }
        self.encrypt(store_key, value)
    }

    /// Encrypts `value` with the first key, bound to `store_key`.
    pub fn encrypt(&self, store_key: &str, mut value: Vec<u8>) -> Result<Vec<u8>, EncryptionError> {
        let fail = || EncryptionError::Encrypt {
            key: store_key.to_string(),
        };
        let k = self.keys.first().ok_or(EncryptionError::NoKeys)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| fail())?;
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(store_key.as_bytes()),
                &mut value,
            )
            .map_err(|_| fail())?;
        let mut out =
            Vec::with_capacity(VALUE_PREFIX.len() + k.name.len() + 1 + NONCE_LEN + value.len());
        out.extend_from_slice(VALUE_PREFIX);
        out.extend_from_slice(k.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&value);
        Ok(out)
    }

    /// The plain value of a stored one: decrypted with the key its prefix names; a value
    /// without the prefix, or of a key not under [`ENCRYPTED_PREFIXES`], is returned as it is.
    pub fn from_storage(
        &self,
        store_key: &str,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, EncryptionError> {
        if !applies_to(store_key) || !is_encrypted(&stored) {
            return Ok(stored);
        }
        self.decrypt(store_key, &stored)
    }

    fn decrypt(&self, store_key: &str, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let malformed = || EncryptionError::Malformed {
            key: store_key.to_string(),
        };
        let rest = stored.get(VALUE_PREFIX.len()..).ok_or_else(malformed)?;
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(malformed)?;
        let (name, body) = (&rest[..colon], &rest[colon + 1..]);
        let k = self
            .keys
            .iter()
            .find(|k| k.name.as_bytes() == name)
            .ok_or_else(|| EncryptionError::UnknownKey {
                key: store_key.to_string(),
                name: String::from_utf8_lossy(name).into_owned(),
            })?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
        let mut buf = sealed.to_vec();
        let plain_len = k
            .key
            .open_in_place(nonce, Aad::from(store_key.as_bytes()), &mut buf)
            .map_err(|_| EncryptionError::Decrypt {
                key: store_key.to_string(),
            })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// `<data_dir>/pki/encryption-keys`: the server's generated keys, one `name:base64` a line.
pub fn keys_file(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("encryption-keys")
}

/// The transformer for a server: the configured keys (`encryption.keys`) if any, else the
/// keys in [`keys_file`], generating a key `key1` into that file (mode 0600) on first start.
pub fn load_or_create<S: AsRef<str>>(
    cfg_keys: &[S],
    data_dir: &Path,
) -> Result<Transformer, EncryptionError> {
    if !cfg_keys.is_empty() {
        return Transformer::new(parse_keys(cfg_keys)?);
    }
    let path = keys_file(data_dir);
    let file_err = |reason: String| EncryptionError::KeysFile {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            let keys = parse_keys(&lines).map_err(|e| file_err(e.to_string()))?;
            Transformer::new(keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key()?;
            write_keys_file(
                &path,
                &format!("{}\n", format_key(GENERATED_KEY_NAME, &key)),
            )
            .map_err(|e| file_err(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated an encryption key for secrets");
            Transformer::new(vec![(GENERATED_KEY_NAME.to_string(), key)])
        }
        Err(e) => Err(file_err(e.to_string())),
    }
}

/// Writes the keys file atomically, readable by its owner only.
fn write_keys_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("keys file has no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// `skiff_store_transformation_operations_total{transformation_type, status}`.
#[derive(Clone)]
pub struct TransformMetrics {
    to_ok: IntCounter,
    to_err: IntCounter,
    from_ok: IntCounter,
    from_err: IntCounter,
}

impl TransformMetrics {
    pub fn register(r: &Registry) -> Result<Self, StoreError> {
        let ops = IntCounterVec::new(
            Opts::new(
                "skiff_store_transformation_operations_total",
                "Values encrypted (to_storage) and decrypted (from_storage) at rest, by outcome.",
            ),
            &["transformation_type", "status"],
        )
        .and_then(|c| r.register(Box::new(c.clone())).map(|_| c))
        .map_err(|e| StoreError::Storage(format!("metrics: {e}")))?;
        Ok(Self {
            to_ok: ops.with_label_values(&["to_storage", "ok"]),
            to_err: ops.with_label_values(&["to_storage", "error"]),
            from_ok: ops.with_label_values(&["from_storage", "ok"]),
            from_err: ops.with_label_values(&["from_storage", "error"]),
        })
    }
}

/// A transformer with its metrics, as a store client carries it (cheap to clone).
#[derive(Clone)]
pub struct Codec {
    transformer: Arc<Transformer>,
    metrics: Option<TransformMetrics>,
}

impl Codec {
    pub fn new(transformer: Arc<Transformer>, metrics: Option<TransformMetrics>) -> Self {
        Self {
            transformer,
            metrics,
        }
    }

    fn count(&self, to_storage: bool, ok: bool) {
        if let Some(m) = &self.metrics {
            match (to_storage, ok) {
                (true, true) => m.to_ok.inc(),
                (true, false) => m.to_err.inc(),
                (false, true) => m.from_ok.inc(),
                (false, false) => m.from_err.inc(),
            }
        }
    }

    /// Encrypts the values of the creates and updates that need it.
    pub fn encode_ops(&self, ops: Vec<Op>) -> Result<Vec<Op>, StoreError> {
        ops.into_iter()
            .map(|op| match op {
                Op::Create { key, value } => {
                    let value = self.encode(&key, value)?;
                    Ok(Op::Create { key, value })
                }
                Op::Update {
                    key,
                    value,
                    expected_mod_revision,
                } => {
                    let value = self.encode(&key, value)?;
                    Ok(Op::Update {
                        key,
                        value,
                        expected_mod_revision,
                    })
                }
                delete @ Op::Delete { .. } => Ok(delete),
            })
            .collect()
    }

    fn encode(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !applies_to(key) {
            return Ok(value);
        }
        let r = self.transformer.encrypt(key, value);
        self.count(true, r.is_ok());
        Ok(r?)
    }

    /// Replaces an encrypted value (of a key under [`ENCRYPTED_PREFIXES`]) by its plain one.
    pub fn decode_kv(&self, kv: &mut KeyValue) -> Result<(), StoreError> {
        if !applies_to(&kv.key) || !is_encrypted(&kv.value) {
            return Ok(());
        }
        let r = self
            .transformer
            .from_storage(&kv.key, std::mem::take(&mut kv.value));
        self.count(false, r.is_ok());
        kv.value = r?;
        Ok(())
    }

    pub fn decode_kvs(&self, kvs: &mut [KeyValue]) -> Result<(), StoreError> {
        kvs.iter_mut().try_for_each(|kv| self.decode_kv(kv))
    }

    pub fn decode_txn(&self, r: &mut TxnResponse) -> Result<(), StoreError> {
        for o in &mut r.results {
            for kv in [o.prev.as_mut(), o.current.as_mut()].into_iter().flatten() {
                self.decode_kv(kv)?;
            }
        }
        Ok(())
    }

    pub fn decode_event(&self, mut e: Event) -> Result<Event, StoreError> {
        self.decode_kv(&mut e.kv)?;
        if let Some(prev) = e.prev.as_mut() {
            self.decode_kv(prev)?;
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "/registry/secrets/default/s1";

    fn key(name: &str, byte: u8) -> (String, [u8; KEY_LEN]) {
        (name.to_string(), [byte; KEY_LEN])
    }

    fn t(keys: &[(&str, u8)]) -> Transformer {
        Transformer::new(keys.iter().map(|(n, b)| key(n, *b)).collect()).expect("transformer")
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn round_trip() {
        let tr = t(&[("key1", 1)]);
        let plain = b"{\"data\":{\"password\":\"aHVudGVyMg==\"}}".to_vec();
        let stored = tr.to_storage(SECRET, plain.clone()).expect("encrypt");
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert!(!contains(&stored, b"aHVudGVyMg=="));
        assert_eq!(
            stored.len(),
            b"k8s:enc:aesgcm:v1:key1:".len() + NONCE_LEN + plain.len() + TAG_LEN
        );
        assert_eq!(
            tr.from_storage(SECRET, stored.clone()).expect("decrypt"),
            plain
        );
        // Random nonces: the same value encrypts differently every time.
        let again = tr.to_storage(SECRET, plain.clone()).expect("encrypt");
        assert_ne!(stored, again);
        // An empty value works too.
        let empty = tr.to_storage(SECRET, Vec::new()).expect("encrypt");
        assert_eq!(tr.from_storage(SECRET, empty).expect("decrypt"), b"");
    }

    #[test]
    fn other_resources_are_not_encrypted() {
        let tr = t(&[("key1", 1)]);
        let v = b"{\"kind\":\"ConfigMap\"}".to_vec();
        let key = "/registry/configmaps/default/c";
        assert_eq!(tr.to_storage(key, v.clone()).expect("to"), v);
        assert!(!applies_to("/registry/secretsx/a"));
        assert!(applies_to("/registry/secrets/kube-system/t"));
        // A value that looks encrypted under a key that is not is left alone.
        let odd = b"k8s:enc:aesgcm:v1:key1:whatever".to_vec();
        assert_eq!(tr.from_storage(key, odd.clone()).expect("from"), odd);
        for p in [
            "",
            "/registry/",
            "/registry/secrets/",
            "/registry/secrets/ns/",
        ] {
            assert!(may_contain_encrypted(p), "{p}");
        }
        for p in [
            "/registry/configmaps/",
            "/registry/rbac.authorization.k8s.io/",
        ] {
            assert!(!may_contain_encrypted(p), "{p}");
        }
    }

    #[test]
    fn unknown_key_name_is_an_error() {
        let stored = t(&[("key1", 1)])
            .to_storage(SECRET, b"v".to_vec())
            .expect("to");
        let err = t(&[("key2", 2)])
            .from_storage(SECRET, stored)
            .expect_err("unknown key");
        assert!(
            matches!(&err, EncryptionError::UnknownKey { name, .. } if name == "key1"),
            "{err}"
        );
        assert!(matches!(
            StoreError::from(err),
            StoreError::Transformation(_)
        ));
    }

    #[test]
    fn same_name_other_key_bytes_fails_authentication() {
        let stored = t(&[("key1", 1)])
            .to_storage(SECRET, b"v".to_vec())
            .expect("to");
        let err = t(&[("key1", 9)])
            .from_storage(SECRET, stored)
            .expect_err("wrong key");
        assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
    }

    #[test]
    fn tampered_ciphertext_is_an_error() {
        let tr = t(&[("key1", 1)]);
        let stored = tr.to_storage(SECRET, b"secret value".to_vec()).expect("to");
        for i in b"k8s:enc:aesgcm:v1:key1:".len()..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            let err = tr
                .from_storage(SECRET, bad)
                .expect_err("tampered byte accepted");
            assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
        }
        // Truncated values: malformed or failing authentication, never a panic.
        for n in VALUE_PREFIX.len()..stored.len() {
            assert!(tr.from_storage(SECRET, stored[..n].to_vec()).is_err());
        }
        assert!(matches!(
            tr.from_storage(SECRET, b"k8s:enc:aesgcm:v1:key1".to_vec()),
            Err(EncryptionError::Malformed { .. })
        ));
    }

    #[test]
    fn plain_values_pass_through() {
        let tr = t(&[("key1", 1)]);
        let plain = b"{\"kind\":\"Secret\"}".to_vec();
        assert_eq!(
            tr.from_storage(SECRET, plain.clone()).expect("plain"),
            plain
        );
        assert_eq!(tr.from_storage(SECRET, Vec::new()).expect("empty"), b"");
    }

    #[test]
    fn ciphertext_is_bound_to_its_store_key() {
        let tr = t(&[("key1", 1)]);
        let stored = tr.to_storage(SECRET, b"v".to_vec()).expect("to");
        let err = tr
            .from_storage("/registry/secrets/default/other", stored)
            .expect_err("moved value decrypted");
        assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = t(&[("key1", 1)]);
        let written_before = old.to_storage(SECRET, b"old".to_vec()).expect("to");
        let rotated = t(&[("key2", 2), ("key1", 1)]);
        assert_eq!(
            rotated.from_storage(SECRET, written_before).expect("old"),
            b"old"
        );
        let written_after = rotated.to_storage(SECRET, b"new".to_vec()).expect("to");
        assert!(written_after.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
        assert_eq!(
            rotated
                .from_storage(SECRET, written_after.clone())
                .expect("new"),
            b"new"
        );
        // The old configuration does not know key2.
        assert!(matches!(
            old.from_storage(SECRET, written_after),
            Err(EncryptionError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_specs_are_checked() {
        let good = format_key("key1", &[7; KEY_LEN]);
        let parsed = parse_keys(&[good.as_str()]).expect("good key");
        assert_eq!(parsed, vec![key("key1", 7)]);
        let short = format!(
            "k:{}",
            base64::engine::general_purpose::STANDARD.encode([1u8; 16])
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let empty_name = format!(":{b64}");
        let colon_name = format!("a:b:{b64}");
        let not_b64 = "k:not base64!".to_string();
        for bad in [short, empty_name, colon_name, not_b64, "nocolon".into()] {
            let err = parse_keys(&[bad.as_str()]).expect_err(&bad);
            // Messages never echo key material.
            assert!(!err.to_string().contains(&b64), "{err}");
        }
        assert!(matches!(
            parse_keys(&[good.as_str(), good.as_str()]),
            Err(EncryptionError::InvalidKey(_))
        ));
        assert!(matches!(
            parse_keys::<&str>(&[]),
            Err(EncryptionError::NoKeys)
        ));
    }

    #[test]
    fn debug_shows_names_not_keys() {
        let s = format!("{:?}", t(&[("key2", 2), ("key1", 1)]));
        assert!(s.contains("key2") && s.contains("key1"), "{s}");
        assert!(!s.contains("2, 2"), "{s}");
    }

    #[test]
    fn generated_keys_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create::<&str>(&[], dir.path()).expect("create");
        let path = keys_file(dir.path());
        assert_eq!(path, dir.path().join("pki/encryption-keys"));
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.key_names(), vec!["key1"]);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1);
        // Loading again reuses the key: what one wrote, the other reads.
        let stored = first.to_storage(SECRET, b"v".to_vec()).expect("to");
        let second = load_or_create::<&str>(&[], dir.path()).expect("load");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        assert_eq!(second.from_storage(SECRET, stored).expect("from"), b"v");
        // Configured keys take precedence over the file.
        let cfg = [format_key("cfg", &[3; KEY_LEN])];
        assert_eq!(
            load_or_create(&cfg, dir.path()).expect("cfg").key_names(),
            vec!["cfg"]
        );
        // A damaged file is an error naming the file, not a new key.
        std::fs::write(&path, "key1:short\n").expect("write");
        let err = load_or_create::<&str>(&[], dir.path()).expect_err("bad file");
        assert!(err.to_string().contains("encryption-keys"), "{err}");
    }

    #[test]
    fn operations_are_counted() {
        let registry = Registry::new();
        let metrics = TransformMetrics::register(&registry).expect("register");
        let codec = Codec::new(Arc::new(t(&[("key1", 1)])), Some(metrics));
        let ops = codec
            .encode_ops(vec![Op::Create {
                key: SECRET.into(),
                value: b"s".to_vec(),
            }])
            .expect("encode");
        let Op::Create { value, .. } = &ops[0] else {
            panic!("create expected");
        };
        let mut kv = KeyValue {
            key: SECRET.into(),
            value: value.clone(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        };
        let mut bad = kv.clone();
        codec.decode_kv(&mut kv).expect("decode");
        bad.value[VALUE_PREFIX.len() + 2] = b'9';
        assert!(codec.decode_kv(&mut bad).is_err());
        let count = |ty: &str, status: &str| -> u64 {
            let families = registry.gather();
            let family = families
                .iter()
                .find(|f| f.get_name() == "skiff_store_transformation_operations_total")
                .expect("metric registered");
            family
                .get_metric()
                .iter()
                .find(|m| {
                    let labels: Vec<(&str, &str)> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.get_name(), l.get_value()))
                        .collect();
                    labels.contains(&("transformation_type", ty))
                        && labels.contains(&("status", status))
                })
                .map_or(0, |m| m.get_counter().get_value() as u64)
        };
        assert_eq!(count("to_storage", "ok"), 1);
        assert_eq!(count("from_storage", "ok"), 1);
        assert_eq!(count("from_storage", "error"), 1);
        assert_eq!(count("to_storage", "error"), 0);
    }

    #[test]
    fn codec_decodes_events_and_txn_results() {
        use crate::store::{EventKind, OpResult};
        let codec = Codec::new(Arc::new(t(&[("key1", 1)])), None);
        let ops = codec
            .encode_ops(vec![
                Op::Create {
                    key: SECRET.into(),
                    value: b"s".to_vec(),
                },
                Op::Update {
                    key: "/registry/configmaps/default/c".into(),
                    value: b"c".to_vec(),
                    expected_mod_revision: None,
                },
            ])
            .expect("encode");
        let Op::Create { value: enc, .. } = &ops[0] else {
            panic!("create expected");
        };
        assert!(is_encrypted(enc));
        let Op::Update { value: plain, .. } = &ops[1] else {
            panic!("update expected");
        };
        assert_eq!(plain, b"c");
        let kv = |v: &[u8]| KeyValue {
            key: SECRET.into(),
            value: v.to_vec(),
            create_revision: 1,
            mod_revision: 2,
            version: 1,
        };
        let e = codec
            .decode_event(Event {
                kind: EventKind::Put,
                kv: kv(enc),
                prev: Some(kv(enc)),
            })
            .expect("event");
        assert_eq!(e.kv.value, b"s");
        assert_eq!(e.prev.expect("prev").value, b"s");
        let mut r = TxnResponse {
            revision: 2,
            results: vec![OpResult {
                prev: Some(kv(enc)),
                current: None,
            }],
        };
        codec.decode_txn(&mut r).expect("txn");
        assert_eq!(r.results[0].prev.as_ref().expect("prev").value, b"s");
        let mut bad = kv(b"k8s:enc:aesgcm:v1:nope:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert!(matches!(
            codec.decode_kv(&mut bad),
            Err(StoreError::Transformation(_))
        ));
    }
}
