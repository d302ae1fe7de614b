//! Who is asking (authentication) and whether they may (authorization).

pub mod delegated;
pub mod impersonate;
pub mod rbac;
pub mod rbac_cache;
pub mod review;
pub mod roles;

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

pub mod authn;
pub mod node;
pub mod node_restriction;

/// The authorizer chain: the privileged group, then the node authorizer, then RBAC. No
/// opinion from any of them is a refusal.
pub async fn authorize(state: &crate::api::state::ApiState, attrs: &Attributes) -> Decision {
    if attrs.user.in_group(MASTERS) {
        return Decision::Allow;
    }
    if let Some(node) = attrs.user.node_name() {
        match node::authorize(state, node, attrs).await {
            Decision::NoOpinion => {}
            d => return d,
        }
    }
    rbac_decision(state, attrs)
}

fn rbac_decision(state: &crate::api::state::ApiState, attrs: &Attributes) -> Decision {
    rbac::authorize(attrs, &state.rbac.snapshot())
}

/// The 403 message upstream gives.
pub fn forbidden_message(a: &Attributes, why: &str) -> String {
    let user = &a.user.username;
    let tail = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    if !a.resource_request {
        return format!(
            "forbidden: User \"{user}\" cannot {} path \"{}\"{tail}",
            a.verb, a.path
        );
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let name = if a.name.is_empty() {
        String::new()
    } else {
        format!("{} ", a.name)
    };
    format!(
        "{res} {name_q}is forbidden: User \"{user}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}{tail}",
        name_q = if name.is_empty() { String::new() } else { format!("\"{}\" ", name.trim()) },
        verb = a.verb,
        plural = res,
        group = a.api_group,
    )
}
