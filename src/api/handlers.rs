//! Resource requests: routing by method and path, then get, list, create, update, patch,
//! delete and deletecollection over the store.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};

use super::body;
use super::defaults;
use super::object::{self, subject};
use super::patch::{self, PatchType};
use super::path::{self, Target};
use super::resources::{Resource, Sub};
use super::selectors::{labels_of, FieldSelector, LabelSelector};
use super::services::{self, Writer};
use super::state::ApiState;
use super::status::ApiError;
use super::subresources;
use super::table;
use super::validate::{self, FieldValidation};
use super::watch;
use crate::store::{Consistency, KeyValue, StoreError};

/// Query parameters (last value wins, as upstream's decoder does for scalars).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(qs: &str) -> Self {
        let pairs: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(qs)
            .map(|q| q.into_inner())
            .unwrap_or_default();
        Query(pairs.into_iter().collect())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// Writes are retried this many times when they lose an optimistic-concurrency race that
/// the client did not ask to detect (no resourceVersion precondition).
const WRITE_ATTEMPTS: usize = 8;

pub struct Ctx<'a> {
    pub state: &'a ApiState,
    pub req: &'a HttpRequest,
    pub q: Query,
    pub t: Target,
}

impl Ctx<'_> {
    pub fn res(&self) -> &'static Resource {
        self.t.res
    }

    pub fn ns(&self) -> Option<&str> {
        self.t.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        self.t.name.as_deref().unwrap_or("")
    }

    pub fn key(&self) -> String {
        self.res().key(self.ns(), self.name())
    }

    pub fn wants_table(&self) -> bool {
        self.req
            .headers()
            .get("accept")
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("as=Table"))
    }

    pub fn content_type(&self) -> Option<&str> {
        self.req
            .headers()
            .get("content-type")
            .and_then(|c| c.to_str().ok())
    }

    fn consistency(&self) -> Consistency {
        match self.q.get("resourceVersion") {
            Some("0") => Consistency::Local,
            _ => Consistency::Linearizable,
        }
    }

    pub fn store_err(&self, e: StoreError) -> ApiError {
        ApiError::from_store(e, subject(self.res(), self.name()))
    }

    /// The stored object, or 404.
    pub async fn load(&self) -> Result<(Value, KeyValue), ApiError> {
        self.load_with(self.consistency()).await
    }

    async fn load_with(&self, consistency: Consistency) -> Result<(Value, KeyValue), ApiError> {
        let kv = self
            .state
            .store
            .get(&self.key(), consistency)
            .await
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| ApiError::not_found(subject(self.res(), self.name())))?;
        Ok((object::from_kv(&kv)?, kv))
    }

    /// The object to base a conditional write on. The first try reads this replica without a
    /// ReadIndex round: the write is conditional on the read's revision, so a stale read only
    /// costs a conflict and a second, linearizable try. Missing locally is asked again.
    pub async fn load_for_write(&self, attempt: usize) -> Result<(Value, KeyValue), ApiError> {
        if attempt == 0 {
            match self.load_with(Consistency::Local).await {
                Err(ApiError::NotFound { .. }) => {}
                other => return other,
            }
        }
        self.load_with(Consistency::Linearizable).await
    }

    /// Writes Services with their ClusterIP and NodePort allocations.
    pub fn services(&self) -> Writer<'_> {
        Writer {
            store: &self.state.store,
            net: &self.state.services,
            dry_run: self.q.dry_run(),
        }
    }

    fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        FieldValidation::parse(self.q.get("fieldValidation"))
    }
}

/// The verb for metrics and routing.
pub fn verb(method: &Method, t: &Target, q: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", false) if q.flag("watch") => "watch",
        ("GET", false) => "list",
        ("GET", true) if q.flag("watch") => "watch",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

pub async fn handle(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let method = ctx.req.method().clone();
    let verb = verb(&method, &ctx.t, &ctx.q);
    if super::auth::review::is_review(ctx.res()) {
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

pub fn respond(ctx: &Ctx<'_>, code: u16, obj: Value, warnings: &[String]) -> HttpResponse {
    let body = if ctx.wants_table() {
        table::for_object(ctx.res(), &obj)
    } else {
        obj
    };
    let mut r = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::OK),
    );
    for w in warnings {
        r.append_header(("Warning", format!("299 - \"{}\"", w.replace('"', "'"))));
    }
    r.content_type("application/json").body(body.to_string())
}

async fn get(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let (obj, _) = ctx.load().await?;
    Ok(respond(ctx, 200, obj, &[]))
}

/// One listed object: its stored form, and the parsed form if selectors needed it.
pub struct Listed {
    pub kv: KeyValue,
    pub obj: Option<Value>,
}

impl Listed {
    pub fn object(&self) -> Result<Value, ApiError> {
        match &self.obj {
            Some(o) => Ok(o.clone()),
            None => object::from_kv(&self.kv),
        }
    }

    pub fn json(&self) -> Result<Vec<u8>, ApiError> {
        match &self.obj {
            Some(o) => serde_json::to_vec(o).map_err(|e| ApiError::Internal(e.to_string())),
            None => object::kv_json(&self.kv, self.kv.mod_revision),
        }
    }
}

/// Matching objects of the target scope, the revision they were read at, and the continue
/// token if `limit` cut the list. Objects are parsed only when a selector needs it.
pub async fn list_objects(
    ctx: &Ctx<'_>,
    consistency: Consistency,
) -> Result<(Vec<Listed>, u64, Option<String>), ApiError> {
    let res = ctx.res();
    let ls = LabelSelector::parse(ctx.q.get("labelSelector").unwrap_or(""))?;
    let fs = FieldSelector::parse(ctx.q.get("fieldSelector").unwrap_or(""), res.kind)?;
    let selecting = !ls.is_empty() || !fs.is_empty();
    let limit: usize = match ctx.q.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
    };
    let start_after = match ctx.q.get("continue") {
        None | Some("") => None,
        Some(token) => Some(decode_continue(token)?),
    };
    let page = ctx
        .state
        .store
        .list(&res.scope_prefix(ctx.ns()), start_after, 0, consistency)
        .await
        .map_err(|e| ctx.store_err(e))?;
    let mut items: Vec<Listed> = Vec::new();
    let mut next = None;
    for kv in page.kvs {
        let obj = if selecting {
            let obj = object::from_kv(&kv)?;
            if !ls.matches(&labels_of(&obj)) || !fs.matches(&obj) {
                continue;
            }
            Some(obj)
        } else {
            None
        };
        if limit > 0 && items.len() == limit {
            next = items.last().map(|l| encode_continue(&l.kv.key));
            break;
        }
        items.push(Listed { kv, obj });
    }
    Ok((items, page.revision, next))
}

fn encode_continue(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
    if token.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

async fn list(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let (items, rev, next) = list_objects(ctx, ctx.consistency()).await?;
    let res = ctx.res();
    let mut meta = json!({ "resourceVersion": rev.to_string() });
    if let Some(n) = next {
        meta["continue"] = json!(n);
    }
    if ctx.wants_table() {
        let objects = items
            .iter()
            .map(Listed::object)
            .collect::<Result<Vec<_>, _>>()?;
        let body = table::for_list(res, &objects, meta);
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(body.to_string()));
    }
    // Assembled from the stored bytes: no parse and re-serialization per object.
    let head =
        json!({ "kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": meta })
            .to_string();
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

/// Defaults and validates `obj` for writing; returns warnings.
pub fn admit(ctx: &Ctx<'_>, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    defaults::apply(ctx.res().kind, obj);
    super::auth::rbac::admit(ctx, obj)?;
    if ctx.res().kind == "Pod" {
        defaults::pod_tolerations(obj, ctx.state.toleration_seconds);
    }
    validate::check(ctx.res(), obj, ctx.field_validation()?)
}

pub async fn create_object(ctx: &Ctx<'_>, mut obj: Value) -> Result<HttpResponse, ApiError> {
    let res = ctx.res();
    object::prepare_create(res, &mut obj, ctx.ns())?;
    super::auth::node::admit_create(&super::auth::UserInfo::of(ctx.req), res.kind, &obj)?;
    if let Some(ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        super::namespaces::check_active(ctx, ns).await?;
    }
    if res.has(Sub::Status) && res.kind != "Namespace" && res.kind != "Node" {
        // Status is the controllers' to write; a create starts from none.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if res.kind == "Pod" {
        super::serviceaccounts::admit_pod(ctx, &mut obj).await?;
    }
    let warnings = admit(ctx, &mut obj)?;
    match res.kind {
        "Job" => defaults::job_selector(&mut obj),
        "PersistentVolumeClaim" => defaults::claim_protection(&mut obj),
        _ => {}
    }
    let name = object::name_of(&obj).to_string();
    let key = res.key(ctx.ns(), &name);
    if res.kind == "Service" {
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
    if res.kind == "Namespace" {
        super::serviceaccounts::ensure_default(&ctx.state.store, &name).await;
    }
    Ok(respond(ctx, 201, obj, &warnings))
}

async fn create(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let obj = body::decode(ctx.content_type(), &bytes)?;
    create_object(ctx, obj).await
}

/// Whether writing `new` removes the object: it is being deleted (not gracefully) and its last
/// finalizer is gone.
fn removes(new: &Value) -> bool {
    let finalizers_empty = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    // A graceful deletion (a pod on a node) waits for its node agent, finalizers or not.
    let graceful = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0);
    let deleting = !graceful
        && new
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
    deleting && finalizers_empty
}

/// Writes `new` over the stored object `old` read at `old_rev`; an object being deleted whose
/// last finalizer is gone is removed instead. Returns what was written.
pub async fn store_update(
    ctx: &Ctx<'_>,
    old: &Value,
    mut new: Value,
    old_rev: u64,
) -> Result<Value, ApiError> {
    if ctx.q.dry_run() {
        return Ok(new);
    }
    let rev = if removes(&new) {
        let (store, kind, key) = (&ctx.state.store, ctx.res().kind, ctx.key());
        let gone = services::delete(store, kind, &key, Some(old_rev), old).await;
        gone.map_err(|e| ctx.store_err(e))?
    } else {
        let bytes = object::to_bytes(&new)?;
        let rev = ctx
            .state
            .store
            .update(&ctx.key(), bytes, Some(old_rev))
            .await;
        rev.map_err(|e| ctx.store_err(e))?
    };
    object::set_rv(&mut new, rev);
    Ok(new)
}

/// Read-modify-write with optimistic concurrency. `change` builds the new object from the
/// current one; a precondition on resourceVersion (from the client) is never retried.
pub async fn guaranteed_update<F>(
    ctx: &Ctx<'_>,
    status_only: bool,
    mut change: F,
) -> Result<(Value, Vec<String>), ApiError>
where
    F: FnMut(&Value) -> Result<(Value, bool), ApiError>,
{
    for attempt in 0..WRITE_ATTEMPTS {
        let (old, kv) = ctx.load_for_write(attempt).await?;
        let (mut new, precondition) = change(&old)?;
        if precondition {
            if let Some(rv) = object::client_rv(&new)? {
                if rv != kv.mod_revision {
                    if attempt == 0 {
                        continue; // maybe only this replica's read was behind
                    }
                    return Err(ApiError::conflict(subject(ctx.res(), ctx.name())));
                }
            }
        }
        object::prepare_update(ctx.res(), &old, &mut new, status_only)?;
        let service = ctx.res().kind == "Service" && !status_only;
        if service {
            services::prepare_update(&old, &mut new);
        }
        let warnings = if status_only {
            Vec::new()
        } else {
            let warnings = admit(ctx, &mut new)?;
            validate::check_update(ctx.res(), &old, &new)?;
            warnings
        };
        let written = if service && !removes(&new) {
            let (who, target) = (
                subject(ctx.res(), ctx.name()),
                services::Write::Update(ctx.key(), kv.mod_revision),
            );
            ctx.services().write(&who, Some(&old), new, target).await
        } else {
            store_update(ctx, &old, new, kv.mod_revision).await
        };
        match written {
            Err(ApiError::Conflict { .. }) if !precondition || attempt == 0 => continue,
            other => return other.map(|obj| (obj, warnings)),
        }
    }
    Err(ApiError::conflict(subject(ctx.res(), ctx.name())))
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
    if ctx.res().kind == "Namespace" {
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
        let graceful = ctx.res().kind == "Pod"
            && obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && opts.grace != Some(0);
        if finalizers.is_empty() && !graceful {
            if ctx.q.dry_run() {
                return Ok(respond(ctx, 200, obj, &[]));
            }
            let (store, kind) = (&ctx.state.store, ctx.res().kind);
            match services::delete(store, kind, &ctx.key(), Some(kv.mod_revision), &obj).await {
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
            let grace = opts
                .grace
                .unwrap_or_else(|| obj_grace(&kv).unwrap_or(if graceful { 30 } else { 0 }));
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

fn obj_grace(kv: &KeyValue) -> Option<i64> {
    let v: Value = serde_json::from_slice(&kv.value).ok()?;
    v.pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
}

async fn delete(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    delete_one(ctx, &bytes).await
}

async fn delete_collection(ctx: &Ctx<'_>, bytes: web::Bytes) -> Result<HttpResponse, ApiError> {
    let (items, _, _) = list_objects(ctx, Consistency::Linearizable).await?;
    let mut deleted = Vec::new();
    for item in items {
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
