//! Subresources: `status`, `scale` (autoscaling/v1 Scale), pod `binding`, pod `log` and
//! `exec` (served by the node agent), and serviceaccount `token` (TokenRequest).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::body;
use super::object;
use super::patch::{self, PatchType};
use super::proxy;
use super::request::{guaranteed_update, respond, Ctx};
use super::resources::Sub;
use super::status::ApiError;

pub async fn handle(
    ctx: &Ctx<'_>,
    sub: Sub,
    verb: &str,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    match (sub, verb) {
        (Sub::Status, "get") => {
            let (obj, _) = ctx.load().await?;
            Ok(respond(ctx, 200, obj, &[]))
        }
        (Sub::Status, "update") => {
            let new = body::decode(ctx.content_type(), &body::read(payload).await?)?;
            let has_rv = object::client_rv(&new)?.is_some();
            let (obj, _) = guaranteed_update(ctx, true, |_| Ok((new.clone(), has_rv))).await?;
            Ok(respond(ctx, 200, obj, &[]))
        }
        (Sub::Status, "patch") => {
            let kind = PatchType::from_content_type(&body::media_type(ctx.content_type()))?;
            let bytes = body::read(payload).await?;
            let p = patch::parse(kind, ctx.content_type(), &bytes)?;
            let res = ctx.res();
            let (obj, _) = guaranteed_update(ctx, true, |old| {
                let new = patch::apply(kind, res.kind, old, &p)?;
                Ok((new, p.pointer("/metadata/resourceVersion").is_some()))
            })
            .await?;
            Ok(respond(ctx, 200, obj, &[]))
        }
        (Sub::Scale, "get") => {
            let (obj, _) = ctx.load().await?;
            Ok(scale_response(ctx, &obj))
        }
        (Sub::Scale, "update" | "patch") => {
            let bytes = body::read(payload).await?;
            scale_write(ctx, verb, &bytes).await
        }
        (Sub::Binding, "create") => {
            let b = body::decode(ctx.content_type(), &body::read(payload).await?)?;
            bind(ctx, &b).await
        }
        (Sub::Log, "get") => {
            let (pod, _) = ctx.load().await?;
            proxy::log(ctx, &pod).await
        }
        // GET for WebSocket (kubectl 1.30+), POST for SPDY.
        (Sub::Exec, "get" | "create") => {
            let (pod, _) = ctx.load().await?;
            proxy::exec(ctx, &pod, payload).await
        }
        (Sub::Token, "create") => super::serviceaccounts::token_request(ctx, payload).await,
        (Sub::Finalize, "update") => {
            let new = body::decode(ctx.content_type(), &body::read(payload).await?)?;
            super::namespaces::finalize(ctx, &new).await
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on {}/{}",
            ctx.res().plural,
            sub.name()
        ))),
    }
}

/// The autoscaling/v1 Scale view of a workload.
fn scale_of(obj: &Value) -> Value {
    let m = object::meta(obj);
    // A LabelSelector's matchLabels, or a ReplicationController's plain map.
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .or_else(|| obj.pointer("/spec/selector"))
        .and_then(Value::as_object)
        .filter(|m| m.values().all(Value::is_string))
        .map(|ml| {
            ml.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn scale_response(_ctx: &Ctx<'_>, obj: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(scale_of(obj).to_string())
}

async fn scale_write(ctx: &Ctx<'_>, verb: &str, bytes: &[u8]) -> Result<HttpResponse, ApiError> {
    let (kind, p) = if verb == "patch" {
        let kind = PatchType::from_content_type(&body::media_type(ctx.content_type()))?;
        (Some(kind), patch::parse(kind, ctx.content_type(), bytes)?)
    } else {
        (None, body::decode(ctx.content_type(), bytes)?)
    };
    let (written, _) = guaranteed_update(ctx, false, |old| {
        let current = scale_of(old);
        let scale = match kind {
            Some(k) => patch::apply(k, "Scale", &current, &p)?,
            None => p.clone(),
        };
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                ctx.name(),
                vec![super::status::Cause::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let given_rv = if kind.is_some() {
            p.pointer("/metadata/resourceVersion").cloned()
        } else {
            scale
                .pointer("/metadata/resourceVersion")
                .cloned()
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        };
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        let m = object::meta_mut(&mut new);
        match &given_rv {
            Some(rv) => m.insert("resourceVersion".into(), rv.clone()),
            None => m.remove("resourceVersion"),
        };
        Ok((new, given_rv.is_some()))
    })
    .await?;
    Ok(scale_response(ctx, &written))
}

/// `pods/{name}/binding`: assigns the pod to a node, once, and marks it PodScheduled, in one
/// write (the scheduler's hot path).
async fn bind(ctx: &Ctx<'_>, binding: &Value) -> Result<HttpResponse, ApiError> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            ctx.name(),
            vec![super::status::Cause::required("target.name")],
        ));
    }
    let name = ctx.name().to_string();
    let conflict = |why: String| ApiError::Conflict {
        message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": {why}"),
        subject: object::subject(ctx.res(), &name),
    };
    let want_uid = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    for attempt in 0..8 {
        let (mut pod, kv) = ctx.load_for_write(attempt).await?;
        if want_uid.is_some_and(|u| pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(u))
        {
            return Err(conflict("the pod was replaced".into()));
        }
        let current = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !current.is_empty() {
            return Err(conflict(format!(
                "pod {name} is already assigned to node \"{current}\""
            )));
        }
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Err(ApiError::Internal(format!("stored pod {name} has no spec")));
        };
        spec.insert("nodeName".into(), json!(node));
        if !pod.get("status").is_some_and(Value::is_object) {
            pod["status"] = json!({});
        }
        let conds = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now()}));
        pod["status"]["conditions"] = json!(conds);
        if !ctx.q.dry_run() {
            match ctx
                .state
                .store
                .update(&ctx.key(), object::to_bytes(&pod)?, Some(kv.mod_revision))
                .await
            {
                Ok(_) => {}
                Err(crate::store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ctx.store_err(e)),
            }
        }
        return Ok(HttpResponse::Created()
            .content_type("application/json")
            .body(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}).to_string()));
    }
    Err(conflict("the pod kept changing".into()))
}
