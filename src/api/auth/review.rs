//! The self reviews: `selfsubjectaccessreviews` and `selfsubjectrulesreviews`
//! (authorization.k8s.io/v1; `kubectl auth can-i [--list]`) and `selfsubjectreviews`
//! (authentication.k8s.io/v1; `kubectl auth whoami`). Nothing is stored: each create answers
//! about the requesting user, with status code 201 as upstream. The reviews about others
//! (token and subject access reviews) are in `delegated`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::delegated;
use super::rbac::{self, PolicyRule};
use super::{Attributes, Decision, UserInfo};
use crate::api::body;
use crate::api::object;
use crate::api::request::Ctx;
use crate::api::state::ApiState;
use crate::api::status::{ApiError, Cause};

pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

pub async fn handle(
    ctx: &Ctx<'_>,
    verb: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if verb != "create" || ctx.t.name.is_some() || ctx.t.sub.is_some() {
        return Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let bytes = body::read(payload).await?;
    let mut obj = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode(ctx.content_type(), &bytes)?
    };
    object::check_type(ctx.res(), &mut obj)?;
    let user = UserInfo::of(ctx.req);
    let out = match ctx.res().kind {
        "SelfSubjectAccessReview" => access_review(ctx.state, user, obj).await?,
        "SelfSubjectRulesReview" => rules_review(ctx.state, &user, obj)?,
        "SubjectAccessReview" => delegated::access_review(ctx.state, obj, None).await?,
        "LocalSubjectAccessReview" => {
            delegated::access_review(
                ctx.state,
                obj,
                Some(ctx.t.namespace.as_deref().unwrap_or("")),
            )
            .await?
        }
        "TokenReview" => delegated::token_review(ctx.state, obj).await?,
        _ => self_subject_review(&user, &ctx.res().api_version()),
    };
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(out.to_string()))
}

pub fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Upstream's `ValidateSelfSubjectAccessReview`: metadata empty (managedFields aside),
/// exactly one of the attribute kinds.
fn validate_access_review(obj: &Value) -> Result<(), ApiError> {
    refuse_invalid("SelfSubjectAccessReview", access_review_causes(obj, &[]))
}

/// What is wrong with an access review: metadata set beyond `meta_allowed` (managedFields
/// aside), or not exactly one of the attribute kinds.
pub fn access_review_causes(obj: &Value, meta_allowed: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let set_meta: Vec<&String> = obj
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, v)| {
                    k.as_str() != "managedFields"
                        && !meta_allowed.contains(&k.as_str())
                        && !v.is_null()
                        && *v != &json!("")
                        && *v != &json!({})
                        && *v != &json!([])
                })
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    if !set_meta.is_empty() {
        let meta = obj.get("metadata").cloned().unwrap_or_default();
        causes.push(Cause::invalid("metadata", meta, "must be empty"));
    }
    let present = |k: &str| {
        obj.pointer(&format!("/spec/{k}"))
            .is_some_and(Value::is_object)
    };
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, true) => causes.push(Cause::invalid(
            "spec.nonResourceAttributes",
            obj.pointer("/spec/nonResourceAttributes")
                .cloned()
                .unwrap_or_default(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (false, false) => causes.push(Cause::invalid(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    causes
}

/// 422 Invalid naming the review's `kind` when validation found anything.
pub fn refuse_invalid(kind: &str, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(AUTHORIZATION_GROUP, kind, "", causes))
    }
}

/// The authorizer attributes a review asks about (upstream's `ResourceAttributesFrom` /
/// `NonResourceAttributesFrom`).
pub fn attributes_of(user: UserInfo, spec: &Value) -> Attributes {
    match spec.get("resourceAttributes").filter(|r| r.is_object()) {
        Some(r) => Attributes {
            user,
            verb: s(r, "verb"),
            resource_request: true,
            api_group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            path: String::new(),
        },
        None => {
            let n = spec
                .get("nonResourceAttributes")
                .cloned()
                .unwrap_or_default();
            Attributes {
                user,
                verb: s(&n, "verb"),
                resource_request: false,
                path: s(&n, "path"),
                ..Default::default()
            }
        }
    }
}

/// The review's `status` for a decision: allowed, denied, and upstream's reason.
pub fn access_status(decision: &Decision, rbac: &rbac::Evaluation) -> Value {
    let (allowed, denied, reason) = match decision {
        Decision::Allow if rbac.allowed => (true, false, rbac.reason.clone()),
        Decision::Allow => (true, false, String::new()),
        Decision::Deny(why) => (false, true, why.clone()),
        Decision::NoOpinion if rbac.allowed => (false, false, String::new()),
        Decision::NoOpinion => (false, false, rbac.reason.clone()),
    };
    let mut st = json!({ "allowed": allowed });
    if denied {
        st["denied"] = json!(true);
    }
    if !reason.is_empty() {
        st["reason"] = json!(reason);
    }
    st
}

async fn access_review(state: &ApiState, user: UserInfo, obj: Value) -> Result<Value, ApiError> {
    validate_access_review(&obj)?;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": format!("{AUTHORIZATION_GROUP}/v1"),
        "metadata": {"creationTimestamp": null},
        "status": decide(state, attributes_of(user, &spec)).await,
        "spec": spec,
    }))
}

/// The `status` of an access review: what the authorizer chain says about `attrs`, with
/// RBAC's explanation.
pub async fn decide(state: &ApiState, attrs: Attributes) -> Value {
    let decision = super::authorize(state, &attrs).await;
    let mut explained = rbac::evaluate(&attrs, &state.rbac.snapshot());
    if attrs.user.in_group(super::MASTERS) && decision == Decision::Allow {
        // Upstream's privileged-group authorizer, first in the chain, gives no reason.
        explained.reason.clear();
    }
    access_status(&decision, &explained)
}

fn resource_rule(r: &PolicyRule) -> Value {
    let mut m = Map::new();
    m.insert("verbs".into(), json!(r.verbs));
    for (k, v) in [
        ("apiGroups", &r.api_groups),
        ("resources", &r.resources),
        ("resourceNames", &r.resource_names),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// The `status` of a rules review for `user` in `namespace` from RBAC's rules (upstream's
/// `RBACAuthorizer.RulesFor` behind the node authorizer, which cannot list a node's rules).
pub fn rules_status(user: &UserInfo, namespace: &str, snap: &rbac::RbacSnapshot) -> Value {
    let (rules, rbac_error) = snap.rules_for(user, namespace);
    let resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !r.resources.is_empty())
        .map(resource_rule)
        .collect();
    let non_resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !r.non_resource_urls.is_empty())
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    let mut errors = Vec::new();
    let incomplete = user.node_name().is_some();
    if incomplete {
        errors.push("node authorizer does not support user rule resolution".to_string());
    }
    if !rbac_error.is_empty() {
        errors.push(rbac_error);
    }
    let mut st = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": incomplete,
    });
    match errors.len() {
        0 => {}
        1 => st["evaluationError"] = json!(errors[0]),
        _ => st["evaluationError"] = json!(format!("[{}]", errors.join(", "))),
    }
    st
}

fn rules_review(state: &ApiState, user: &UserInfo, obj: Value) -> Result<Value, ApiError> {
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let namespace = s(&spec, "namespace");
    if namespace.is_empty() {
        return Err(ApiError::BadRequest("no namespace on request".into()));
    }
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": format!("{AUTHORIZATION_GROUP}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": rules_status(user, &namespace, &state.rbac.snapshot()),
    }))
}

/// `SelfSubjectReview` (of `api_version`) with the caller's `status.userInfo`.
pub fn self_subject_review(user: &UserInfo, api_version: &str) -> Value {
    let mut info = Map::new();
    if !user.username.is_empty() {
        info.insert("username".into(), json!(user.username));
    }
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": object::now()},
        "status": {"userInfo": info},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_from_either_kind_of_spec() {
        let u = UserInfo::anonymous();
        let a = attributes_of(
            u.clone(),
            &json!({"resourceAttributes": {"namespace": "ns", "verb": "get", "group": "apps", "resource": "deployments", "subresource": "scale", "name": "web"}}),
        );
        assert!(a.resource_request);
        assert_eq!(
            (a.namespace.as_str(), a.verb.as_str(), a.api_group.as_str()),
            ("ns", "get", "apps")
        );
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str(), a.name.as_str()),
            ("deployments", "scale", "web")
        );
        let a = attributes_of(
            u,
            &json!({"nonResourceAttributes": {"path": "/logs", "verb": "get"}}),
        );
        assert!(!a.resource_request);
        assert_eq!((a.path.as_str(), a.verb.as_str()), ("/logs", "get"));
    }

    #[test]
    fn validation_wants_exactly_one_attribute_kind() {
        let none = json!({"spec": {}});
        assert!(matches!(
            validate_access_review(&none),
            Err(ApiError::Invalid { .. })
        ));
        let both = json!({"spec": {"resourceAttributes": {}, "nonResourceAttributes": {}}});
        assert!(matches!(
            validate_access_review(&both),
            Err(ApiError::Invalid { .. })
        ));
        let ok = json!({"metadata": {"creationTimestamp": null}, "spec": {"resourceAttributes": {"verb": "get"}}});
        assert!(validate_access_review(&ok).is_ok());
        let named = json!({"metadata": {"name": "x"}, "spec": {"resourceAttributes": {}}});
        assert!(validate_access_review(&named).is_err());
    }

    #[test]
    fn status_fields_as_upstream() {
        let yes = rbac::Evaluation {
            allowed: true,
            reason: "RBAC: allowed by x".into(),
        };
        let no = rbac::Evaluation {
            allowed: false,
            reason: String::new(),
        };
        assert_eq!(
            access_status(&Decision::Allow, &yes),
            json!({"allowed": true, "reason": "RBAC: allowed by x"})
        );
        assert_eq!(
            access_status(&Decision::NoOpinion, &no),
            json!({"allowed": false})
        );
        assert_eq!(
            access_status(&Decision::Deny("node".into()), &no),
            json!({"allowed": false, "denied": true, "reason": "node"})
        );
    }

    #[test]
    fn rules_and_whoami() {
        let objs = [
            json!({"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"apiGroup": rbac::GROUP, "kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "User", "apiGroup": rbac::GROUP, "name": "u"}]}),
        ];
        let snap = rbac::RbacSnapshot::from_objects(&objs);
        let u = UserInfo {
            username: "u".into(),
            groups: vec!["g".into()],
            ..Default::default()
        };
        let st = rules_status(&u, "default", &snap);
        assert_eq!(
            st,
            json!({"resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}], "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}], "incomplete": false})
        );
        let who = self_subject_review(&u, "authentication.k8s.io/v1");
        assert_eq!(
            who["status"]["userInfo"],
            json!({"username": "u", "groups": ["g"]})
        );
        assert_eq!(who["kind"], "SelfSubjectReview");
    }
}
