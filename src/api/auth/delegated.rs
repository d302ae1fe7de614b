//! Reviews about someone else, for servers that delegate their authentication and
//! authorization to the cluster (Vault's Kubernetes auth, kube-rbac-proxy, webhooks):
//! `tokenreviews` (authentication.k8s.io/v1) and `subjectaccessreviews` /
//! `localsubjectaccessreviews` (authorization.k8s.io/v1). Nothing is stored. Creating them
//! takes RBAC `create` on the resource (`system:auth-delegator`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::rbac::strings;
use super::review::{self, s, AUTHENTICATION_GROUP, AUTHORIZATION_GROUP};
use super::UserInfo;
use crate::api::state::ApiState;
use crate::api::status::{ApiError, Cause};
use crate::pki::jwt::AUDIENCE;

/// The user a subject access review asks about (`spec.user`, `groups`, `uid`, `extra`).
fn subject(spec: &Value) -> UserInfo {
    let extra = spec.get("extra").unwrap_or(&Value::Null);
    let extra: BTreeMap<String, Vec<String>> = extra
        .as_object()
        .map(|m| m.keys().map(|k| (k.clone(), strings(extra, k))).collect())
        .unwrap_or_default();
    UserInfo {
        username: s(spec, "user"),
        uid: s(spec, "uid"),
        groups: strings(spec, "groups"),
        extra,
    }
}

/// A `SubjectAccessReview`, or with `namespace` (the request's) a `LocalSubjectAccessReview`:
/// whether the user in `spec` may do what it describes (upstream's validation first).
pub async fn access_review(
    state: &ApiState,
    obj: Value,
    namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = subject(&spec);
    let (kind, meta_allowed): (&str, &[&str]) = match namespace {
        Some(_) => ("LocalSubjectAccessReview", &["namespace"]),
        None => ("SubjectAccessReview", &[]),
    };
    let mut causes = review::access_review_causes(&obj, meta_allowed);
    if user.username.is_empty() && user.groups.is_empty() {
        causes.push(Cause::invalid(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    let mut metadata = json!({"creationTimestamp": null});
    if let Some(ns) = namespace {
        if ns.is_empty() {
            return Err(ApiError::BadRequest(
                "namespace is required on this type".into(),
            ));
        }
        let meta_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        if meta_ns.is_some_and(|m| !m.is_empty() && m != ns) {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
            causes.push(Cause::invalid(
                "spec.nonResourceAttributes",
                n,
                "disallowed on this kind of request",
            ));
        }
        if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
            let asked = s(r, "namespace");
            if asked != ns {
                causes.push(Cause::invalid(
                    "spec.resourceAttributes.namespace",
                    asked,
                    "must match metadata.namespace",
                ));
            }
        }
        metadata["namespace"] = json!(ns);
    }
    review::refuse_invalid(kind, causes)?;
    Ok(json!({
        "kind": kind,
        "apiVersion": format!("{AUTHORIZATION_GROUP}/v1"),
        "metadata": metadata,
        "status": review::decide(state, review::attributes_of(user, &spec)).await,
        "spec": spec,
    }))
}

/// A `TokenReview`: who a bearer token names, for which of `spec.audiences` (default: the
/// API's). A token that is not valid is answered with `authenticated` unset and an error, as
/// upstream; only a request without a token is refused.
pub async fn token_review(state: &ApiState, obj: Value) -> Result<Value, ApiError> {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let token = s(&spec, "token");
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is required for TokenReview in authentication".into(),
        ));
    }
    let mut audiences = strings(&spec, "audiences");
    if audiences.is_empty() {
        audiences.push(AUDIENCE.into());
    }
    let status = match state.authn.token_user_for(&token, &audiences).await {
        Some((user, valid)) => json!({"authenticated": true, "user": user, "audiences": valid}),
        None => json!({"user": {}, "error": "invalid bearer token"}),
    };
    Ok(json!({
        "kind": "TokenReview",
        "apiVersion": format!("{AUTHENTICATION_GROUP}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_takes_every_field_and_ignores_wrong_types() {
        let u = subject(&json!({
            "user": "jane", "uid": "42", "groups": ["dev", 7],
            "extra": {"scopes": ["a", "b"], "bad": "x"},
        }));
        assert_eq!((u.username.as_str(), u.uid.as_str()), ("jane", "42"));
        assert_eq!(u.groups, vec!["dev".to_string()]);
        assert_eq!(u.extra["scopes"], vec!["a".to_string(), "b".to_string()]);
        assert!(u.extra["bad"].is_empty());
        assert_eq!(subject(&json!({})), UserInfo::default());
    }
}
