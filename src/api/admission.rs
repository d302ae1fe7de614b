//! Admission plugins around a kind's strategy, as kube-apiserver runs them: mutating ones
//! before the strategy defaults and validates, validating ones after. Each plugin says which
//! resources it concerns, as upstream's do.

use serde_json::Value;

use super::auth::UserInfo;
use super::registry::core::pod;
use super::request::Ctx;
use super::status::ApiError;

fn is(ctx: &Ctx<'_>, res: &super::resources::Resource) -> bool {
    std::ptr::eq(ctx.res(), res)
}

/// Mutating plugins on create: ServiceAccount (a pod's account and token volume) and
/// DefaultTolerationSeconds (pods tolerate a failing node for a while).
pub async fn mutate_create(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if is(ctx, &pod::RESOURCE) {
        super::serviceaccounts::admit_pod(ctx, obj).await?;
        super::defaults::pod_tolerations(obj, ctx.state.toleration_seconds);
    }
    Ok(())
}

/// Validating plugins on create: NamespaceLifecycle (nothing new in a namespace being
/// deleted), NodeRestriction (a node creates only its own Node and Lease), PodSecurity and
/// RBAC's escalation check. Returns warnings.
pub async fn validate_create(ctx: &Ctx<'_>, obj: &Value) -> Result<Vec<String>, ApiError> {
    if ctx.res().namespaced {
        if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            super::namespaces::check_active(ctx, ns).await?;
        }
    }
    super::auth::node::admit_create(&UserInfo::of(ctx.req), ctx.res(), obj)?;
    let warnings = super::podsecurity::admit(ctx, obj, None).await?;
    super::auth::rbac::admit(ctx, obj)?;
    Ok(warnings)
}

/// Validating plugins on update of `old`: PodSecurity and RBAC's escalation check. Returns
/// warnings.
pub async fn validate_update(
    ctx: &Ctx<'_>,
    old: &Value,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    let warnings = super::podsecurity::admit(ctx, obj, Some(old)).await?;
    super::auth::rbac::admit(ctx, obj)?;
    Ok(warnings)
}
