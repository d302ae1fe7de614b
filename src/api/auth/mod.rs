//! Who is asking (authentication) and whether they may (authorization).

use std::collections::BTreeMap;

use actix_web::{HttpMessage, HttpRequest};
use serde::{Deserialize, Serialize};

/// The authenticated caller, as Kubernetes' `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const MASTERS: &str = "system:masters";
pub const NODES: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            username: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.username == ANONYMOUS
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The node name when this is a node's credential (`system:node:NAME` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        self.username
            .strip_prefix(NODE_PREFIX)
            .filter(|_| self.in_group(NODES))
    }

    /// The caller of a request; anonymous when authentication left nothing.
    pub fn of(req: &HttpRequest) -> UserInfo {
        req.extensions()
            .get::<UserInfo>()
            .cloned()
            .unwrap_or_else(UserInfo::anonymous)
    }
}

/// What a request asks to do, as Kubernetes' `authorizer.Attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection (resource requests);
    /// get, post, put, ... (lower-case HTTP method) for non-resource paths.
    pub verb: String,
    /// True for `/api/...` and `/apis/...` object requests; false for paths like `/metrics`.
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path (non-resource requests).
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused outright, with the reason; no later authorizer is asked.
    Deny(String),
    /// This authorizer has nothing to say; the next one decides.
    NoOpinion,
}
