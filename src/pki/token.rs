//! The cluster token (`--token`): a shared secret that lets servers and agents join, and,
//! in its full form, the hash of the CA certificate they must find (like k3s's `K10...`).

use std::fmt;

use super::PkiError;

const PREFIX: &str = "SKIFF10";

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterToken {
    /// sha256 (hex) of the CA certificate, when the token pins it.
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never log the secret.
        f.debug_struct("ClusterToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl ClusterToken {
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let text = text.trim();
        let bad = |why: &str| PkiError::Token(why.into());
        if let Some(rest) = text.strip_prefix(PREFIX) {
            let (hash, secret) = rest
                .split_once("::")
                .ok_or_else(|| bad("a SKIFF10 token is SKIFF10<ca sha256>::<secret>"))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("the CA hash of a SKIFF10 token is 64 hex digits"));
            }
            Self::secret_ok(secret)?;
            return Ok(ClusterToken {
                ca_hash: Some(hash.to_ascii_lowercase()),
                secret: secret.into(),
            });
        }
        Self::secret_ok(text)?;
        Ok(ClusterToken {
            ca_hash: None,
            secret: text.into(),
        })
    }

    fn secret_ok(s: &str) -> Result<(), PkiError> {
        if s.len() < 16 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PkiError::Token(
                "the token secret must be at least 16 printable characters".into(),
            ));
        }
        Ok(())
    }

    /// A new random secret (256 bits).
    pub fn generate() -> Result<Self, PkiError> {
        let mut b = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .map_err(|_| PkiError::Token("no randomness".into()))?;
        Ok(ClusterToken {
            ca_hash: None,
            secret: super::ca::hex(&b),
        })
    }

    /// The full form, pinning `ca_hash`.
    pub fn full(&self, ca_hash: &str) -> String {
        format!("{PREFIX}{ca_hash}::{}", self.secret)
    }

    /// Whether `presented` is this token's secret. Digests are compared, so the time taken
    /// tells nothing about how much of the secret matched.
    pub fn accepts(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        let presented = ClusterToken::parse(presented)
            .map(|t| t.secret)
            .unwrap_or_default();
        Sha256::digest(presented.as_bytes()) == Sha256::digest(self.secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let t = ClusterToken::generate().expect("token");
        let hash = "ab".repeat(32);
        let full = ClusterToken::parse(&t.full(&hash)).expect("full");
        assert_eq!(full.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(full.secret, t.secret);
        assert!(t.accepts(&t.full(&hash)));
        assert!(t.accepts(&t.secret));
        assert!(!t.accepts("0123456789abcdef0123"));
        assert!(ClusterToken::parse("short").is_err());
        assert!(ClusterToken::parse("SKIFF10nothex::0123456789abcdef").is_err());
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}
