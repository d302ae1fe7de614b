//! Bearer tokens: ES256 JWTs signed with the cluster's token key (held by servers). The
//! admin and in-process components get long-lived ones; ServiceAccount tokens are bound to a
//! ServiceAccount (and pod) and expire, with upstream's claims.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::PkiError;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Groups of a non-ServiceAccount token (admin, components).
    #[serde(
        default,
        rename = "skiff.io/groups",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub groups: Vec<String>,
    #[serde(
        default,
        rename = "kubernetes.io",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes: Option<KubernetesClaims>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// Signs (with the private key) and verifies (with the public key) tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TokenKeys {
    /// A new P-256 key pair: (private PKCS#8 PEM, public SPKI PEM).
    pub fn generate() -> Result<(String, String), PkiError> {
        let key = rcgen::KeyPair::generate()
            .map_err(|e| PkiError::Certificate(format!("token key: {e}")))?;
        Ok((key.serialize_pem(), key.public_key_pem()))
    }

    pub fn from_private_pem(pem: &str) -> Result<Self, PkiError> {
        let key = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| PkiError::Token(format!("token key: {e}")))?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| PkiError::Token(format!("token key: {e}")))?;
        let mut keys = Self::from_public_pem(&key.public_key_pem())?;
        keys.encoding = Some(encoding);
        Ok(keys)
    }

    pub fn from_public_pem(pem: &str) -> Result<Self, PkiError> {
        let decoding = DecodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| PkiError::Token(format!("token public key: {e}")))?;
        Ok(TokenKeys {
            encoding: None,
            decoding,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, PkiError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| PkiError::Token("no private token key on this node".into()))?;
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, key)
            .map_err(|e| PkiError::Token(format!("sign token: {e}")))
    }

    /// A long-lived token for `user` in `groups` (the admin, in-process components).
    pub fn user_token(&self, user: &str, groups: &[&str]) -> Result<String, PkiError> {
        self.sign(&Claims {
            iss: ISSUER.into(),
            sub: user.into(),
            iat: now(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        })
    }

    /// The claims of a token this cluster signed, if valid (signature, expiry, audience).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_for(token, &[AUDIENCE.to_string()])
            .map(|(claims, _)| claims)
    }

    /// The claims of a token this cluster signed for one of `audiences` (signature, expiry),
    /// with those of `audiences` it is valid for. A token without audiences is the API's
    /// (upstream's default API audience).
    pub fn verify_for(&self, token: &str, audiences: &[String]) -> Option<(Claims, Vec<String>)> {
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = 5;
        v.validate_aud = false;
        v.set_issuer(&[ISSUER]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()?
            .claims;
        let valid: Vec<String> = audiences
            .iter()
            .filter(|a| {
                if claims.aud.is_empty() {
                    *a == AUDIENCE
                } else {
                    claims.aud.contains(a)
                }
            })
            .cloned()
            .collect();
        (!valid.is_empty()).then_some((claims, valid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_forgeries_do_not() {
        let (private, public) = TokenKeys::generate().expect("keys");
        let keys = TokenKeys::from_private_pem(&private).expect("private");
        let t = keys.user_token("admin", &["system:masters"]).expect("sign");
        let c = TokenKeys::from_public_pem(&public)
            .expect("public")
            .verify(&t)
            .expect("valid");
        assert_eq!(c.sub, "admin");
        assert_eq!(c.groups, vec!["system:masters".to_string()]);
        let (other, _) = TokenKeys::generate().expect("keys");
        let foreign = TokenKeys::from_private_pem(&other)
            .expect("other")
            .user_token("admin", &["system:masters"])
            .expect("sign");
        assert!(keys.verify(&foreign).is_none());
        assert!(keys.verify("not.a.token").is_none());
        let expired = keys
            .sign(&Claims {
                iss: ISSUER.into(),
                sub: "x".into(),
                exp: Some(now() - 60),
                ..Default::default()
            })
            .expect("sign");
        assert!(keys.verify(&expired).is_none());
    }

    #[test]
    fn audiences_are_those_both_the_token_and_the_caller_name() {
        let (private, _) = TokenKeys::generate().expect("keys");
        let keys = TokenKeys::from_private_pem(&private).expect("private");
        let token = |aud: &[&str]| {
            keys.sign(&Claims {
                iss: ISSUER.into(),
                sub: "x".into(),
                aud: aud.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            })
            .expect("sign")
        };
        let wanted = |aud: &[&str]| aud.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let valid = |t: &str, aud: &[&str]| keys.verify_for(t, &wanted(aud)).map(|(_, v)| v);
        let vault = token(&["vault", "other"]);
        assert_eq!(valid(&vault, &["x", "vault"]), Some(wanted(&["vault"])));
        assert_eq!(valid(&vault, &[AUDIENCE]), None);
        assert!(keys.verify(&vault).is_none());
        // No audience in the token: the API's only.
        let plain = token(&[]);
        assert_eq!(
            valid(&plain, &[AUDIENCE, "vault"]),
            Some(wanted(&[AUDIENCE]))
        );
        assert_eq!(valid(&plain, &["vault"]), None);
        assert!(keys.verify(&plain).is_some());
    }
}
