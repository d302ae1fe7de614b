//! Resource requests: routing by method and path, then get, list, create, update, patch,
//! delete and deletecollection over the store.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};

use super::body;
use super::object::{self, subject};
use super::patch::{self, PatchType};
use super::path::{self, Target};
use super::registry::Storage;
use super::request::list::{list_objects, ListRead, Listed};
use super::request::write::{admit_create, guaranteed_update, WRITE_ATTEMPTS};
use super::request::{partial, respond, verb, Ctx, Query, View};
use super::services;
use super::state::ApiState;
use super::status::ApiError;
use super::subresources;
use super::table;
use super::watch;
use crate::store::{Consistency, StoreError};

pub async fn handle(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let method = ctx.req.method().clone();
    let verb = verb(&method, &ctx.t, &ctx.q);
    if ctx.res().strategy.storage() == Storage::Review {
        return super::auth::review::handle(ctx, verb, payload).await;
    }
    if let Some(sub) = ctx.t.sub {
        return subresources::handle(ctx, sub, verb, payload).await;
    }
    match verb {
        "list" => list(ctx).await,
        "watch" => watch::serve(ctx).await,
        "get" => get(ctx).await,
        "create" if ctx.t.name.is_none() => create(ctx, body::read(payload).await?).await,
        "update" => update(ctx, body::read(payload).await?).await,
        "patch" => patch(ctx, body::read(payload).await?).await,
        "delete" => delete(ctx, body::read(payload).await?).await,
        "deletecollection" => delete_collection(ctx, body::read(payload).await?).await,
        _ => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            ctx.req.path()
        ))),
    }
}

async fn get(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let (obj, _) = ctx.load().await?;
    Ok(respond(ctx, 200, obj, &[]))
}

async fn list(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let page = list_objects(ctx, &ListRead::of_list(ctx)?).await?;
    let res = ctx.res();
    let meta = page.list_meta();
    let view = ctx.view();
    if view != View::Object {
        let objects = page
            .items
            .iter()
            .map(Listed::object)
            .collect::<Result<Vec<_>, _>>()?;
        let body = if view == View::Table {
            table::for_list(res, &objects, meta)
        } else {
            let items: Vec<Value> = objects.iter().map(partial).collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
        };
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(body.to_string()));
    }
    // Assembled from the stored bytes: no parse and re-serialization per object.
    let head =
        json!({ "kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": meta })
            .to_string();
    let items = &page.items;
    let mut body = Vec::with_capacity(
        items.iter().map(|l| l.kv.value.len() + 32).sum::<usize>() + head.len() + 16,
    );
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item.json()?);
    }
    body.extend_from_slice(b"]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

pub async fn create_object(ctx: &Ctx<'_>, mut obj: Value) -> Result<HttpResponse, ApiError> {
    let res = ctx.res();
    object::prepare_create(res, &mut obj, ctx.ns())?;
    let warnings = admit_create(ctx, &mut obj).await?;
    let name = object::name_of(&obj).to_string();
    let key = res.key(ctx.ns(), &name);
    let storage = res.strategy.storage();
    if storage == Storage::ServiceAllocations {
        let who = subject(res, &name);
        let create = services::Write::Create(key);
        let obj = ctx.services().write(&who, None, obj, create).await?;
        return Ok(respond(ctx, 201, obj, &warnings));
    }
    if ctx.q.dry_run() {
        return Ok(respond(ctx, 201, obj, &warnings));
    }
    let rev = ctx
        .state
        .store
        .create(&key, object::to_bytes(&obj)?)
        .await
        .map_err(|e| ApiError::from_store(e, subject(res, &name)))?;
    object::set_rv(&mut obj, rev);
    if storage == Storage::Namespace {
        // The controller makes it too; here it is there before the first pod asks.
        super::serviceaccounts::ensure_default(&ctx.state.store, &name).await;
    }
    Ok(respond(ctx, 201, obj, &warnings))
}

async fn create(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let obj = body::decode(ctx.content_type(), &bytes)?;
    create_object(ctx, obj).await
}

async fn update(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let new = body::decode(ctx.content_type(), &bytes)?;
    let has_rv = object::client_rv(&new)?.is_some();
    let (obj, warnings) = guaranteed_update(ctx, false, |_| Ok((new.clone(), has_rv))).await?;
    Ok(respond(ctx, 200, obj, &warnings))
}

async fn patch(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let kind = PatchType::from_content_type(&body::media_type(ctx.content_type()))?;
    let p = patch::parse(kind, ctx.content_type(), &bytes)?;
    if kind == PatchType::Apply {
        match ctx.load().await {
            Err(ApiError::NotFound { .. }) => {
                // Creating takes `create`, not only the `patch` the request was checked for.
                if let Some(refused) = authorize(ctx.state, ctx.req, &ctx.t, "create").await {
                    return Err(refused);
                }
                let mut obj = p.clone();
                if obj.is_object() {
                    object::meta_mut(&mut obj).insert("name".into(), json!(ctx.name()));
                }
                return create_object(ctx, obj).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let res = ctx.res();
    let (obj, warnings) = guaranteed_update(ctx, false, |old| {
        let mut new = patch::apply(kind, res.kind, old, &p)?;
        // A resourceVersion in the patch is a precondition; the one of `old` is not.
        let given = p.pointer("/metadata/resourceVersion").cloned();
        let m = object::meta_mut(&mut new);
        match &given {
            Some(rv) => m.insert("resourceVersion".into(), rv.clone()),
            None => m.remove("resourceVersion"),
        };
        Ok((new, given.is_some()))
    })
    .await?;
    Ok(respond(ctx, 200, obj, &warnings))
}

/// `DeleteOptions` from the body or the query.
struct DeleteOptions {
    propagation: Option<String>,
    grace: Option<i64>,
    uid: Option<String>,
    rv: Option<String>,
}

fn delete_options(ctx: &Ctx<'_>, bytes: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode(ctx.content_type(), bytes)?
    };
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    let propagation =
        str_of(body.get("propagationPolicy")).or(ctx.q.get("propagationPolicy").map(String::from));
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy {p:?} is not one of Orphan, Background, Foreground"
            )));
        }
    }
    let grace = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or(ctx.q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    Ok(DeleteOptions {
        propagation,
        grace,
        uid: str_of(body.pointer("/preconditions/uid")),
        rv: str_of(body.pointer("/preconditions/resourceVersion")),
    })
}

/// Deletes (or, with finalizers, marks) one object; returns the response body.
pub async fn delete_one(ctx: &Ctx<'_>, opts_bytes: &[u8]) -> Result<HttpResponse, ApiError> {
    let opts = delete_options(ctx, opts_bytes)?;
    let storage = ctx.res().strategy.storage();
    if storage == Storage::Namespace {
        return super::namespaces::delete(ctx).await;
    }
    for _ in 0..WRITE_ATTEMPTS {
        let (mut obj, kv) = ctx.load().await?;
        let m = object::meta(&obj).clone();
        if opts
            .uid
            .as_deref()
            .is_some_and(|u| m.get("uid").and_then(Value::as_str) != Some(u))
            || opts
                .rv
                .as_deref()
                .is_some_and(|rv| rv != kv.mod_revision.to_string())
        {
            return Err(ApiError::conflict(subject(ctx.res(), ctx.name())));
        }
        let mut finalizers: Vec<Value> = m
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match opts.propagation.as_deref() {
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            _ => {}
        }
        // A pod on a node is deleted gracefully: marked, and removed by its node agent.
        let default_grace = ctx.res().strategy.graceful_delete(&obj);
        let graceful = default_grace.is_some() && opts.grace != Some(0);
        if finalizers.is_empty() && !graceful {
            if ctx.q.dry_run() {
                return Ok(respond(ctx, 200, obj, &[]));
            }
            let store = &ctx.state.store;
            match services::delete(store, storage, &ctx.key(), Some(kv.mod_revision), &obj).await {
                Ok(rev) => {
                    object::set_rv(&mut obj, rev);
                    return Ok(respond(ctx, 200, obj, &[]));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ctx.store_err(e)),
            }
        }
        let meta = object::meta_mut(&mut obj);
        if meta.get("deletionTimestamp").is_none_or(Value::is_null) {
            let grace = opts.grace.or(default_grace).unwrap_or(0);
            let meta = object::meta_mut(&mut obj);
            meta.insert("deletionTimestamp".into(), json!(object::now()));
            meta.insert(
                "deletionGracePeriodSeconds".into(),
                json!(if graceful { grace } else { 0 }),
            );
        }
        object::meta_mut(&mut obj).insert("finalizers".into(), json!(finalizers));
        if ctx.q.dry_run() {
            return Ok(respond(ctx, 200, obj, &[]));
        }
        match ctx
            .state
            .store
            .update(&ctx.key(), object::to_bytes(&obj)?, Some(kv.mod_revision))
            .await
        {
            Ok(rev) => {
                object::set_rv(&mut obj, rev);
                return Ok(respond(ctx, 200, obj, &[]));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ctx.store_err(e)),
        }
    }
    Err(ApiError::conflict(subject(ctx.res(), ctx.name())))
}

async fn delete(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    delete_one(ctx, &bytes).await
}

async fn delete_collection(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let page = list_objects(ctx, &ListRead::current(Consistency::Linearizable)).await?;
    let mut deleted = Vec::new();
    for item in page.items {
        let obj = item.object()?;
        let t = Target {
            res: ctx.res(),
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from),
            name: Some(object::name_of(&obj).to_string()),
            sub: None,
        };
        let one = Ctx {
            state: ctx.state,
            req: ctx.req,
            q: Query::parse(ctx.req.query_string()),
            t,
        };
        match delete_one(&one, &bytes).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(obj),
            Err(e) => return Err(e),
        }
    }
    let res = ctx.res();
    let body = json!({ "kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {}, "items": deleted });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}

/// Entry point for `/api/...` and `/apis/...` resource paths.
/// The authorizers' answer for a resource request (`None`: allowed).
async fn authorize(
    state: &ApiState,
    req: &HttpRequest,
    t: &Target,
    verb: &str,
) -> Option<ApiError> {
    let attrs = super::auth::Attributes {
        user: super::auth::UserInfo::of(req),
        verb: verb.into(),
        resource_request: true,
        api_group: t.res.group.into(),
        resource: t.res.plural.into(),
        subresource: t.sub.map(|s| s.name().to_string()).unwrap_or_default(),
        // A namespace's own namespace is itself, as upstream.
        namespace: match (&t.namespace, t.res.plural, &t.name) {
            (Some(ns), _, _) => ns.clone(),
            (None, "namespaces", Some(name)) => name.clone(),
            _ => String::new(),
        },
        name: t.name.clone().unwrap_or_default(),
        path: req.path().into(),
    };
    super::auth::authn::refusal(state, &attrs).await
}

pub async fn resource(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
    group: &str,
    version: &str,
    rest: &str,
) -> HttpResponse {
    let started = Instant::now();
    let q = Query::parse(req.query_string());
    let target = match path::parse(group, version, rest) {
        Ok(t) => t,
        Err(e) => {
            state.metrics.observe("unknown", "", e.code(), started);
            return e.error_response();
        }
    };
    let verb = verb(req.method(), &target, &q);
    if let Some(refused) = authorize(&state, &req, &target, verb).await {
        state
            .metrics
            .observe(verb, target.res.plural, refused.code(), started);
        return refused.error_response();
    }
    let resource = match target.sub {
        Some(s) => format!("{}/{}", target.res.plural, s.name()),
        None => target.res.plural.to_string(),
    };
    let ctx = Ctx {
        state: &state,
        req: &req,
        q,
        t: target,
    };
    let response = match handle(&ctx, payload).await {
        Ok(r) => r,
        Err(e) => e.error_response(),
    };
    if verb != "watch" {
        state
            .metrics
            .observe(verb, &resource, response.status().as_u16(), started);
    }
    response
}
