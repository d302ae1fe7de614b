//! Request plumbing below the handlers: the parsed query, the request context, reads with
//! their consistency, paged lists (`list`) and guaranteed updates (`write`). Nothing here
//! knows a kind; handlers, subresources and watches build on it.

pub mod info;
pub mod list;
pub mod write;

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::object::{self, subject};
use super::path::Target;
use super::resources::Resource;
use super::services::Writer;
use super::state::ApiState;
use super::status::ApiError;
use super::table;
use super::validate::FieldValidation;
use crate::store::{Consistency, KeyValue, StoreError};

pub use write::guaranteed_update;

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

    /// A non-empty value.
    pub fn given(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

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

    /// How objects go back: as they are, as a `Table` (kubectl get), or as
    /// `PartialObjectMetadata` (metadata-only clients such as the garbage collector).
    pub fn view(&self) -> View {
        let accept = self
            .req
            .headers()
            .get("accept")
            .and_then(|a| a.to_str().ok())
            .unwrap_or("");
        if accept.contains("as=Table") {
            View::Table
        } else if accept.contains("as=PartialObjectMetadata") {
            View::Metadata
        } else {
            View::Object
        }
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

    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        FieldValidation::parse(self.q.get("fieldValidation"))
    }
}

/// The verb for metrics, authorization and routing.
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

/// What a client asked objects to come back as (`Accept: ...;as=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Object,
    Table,
    Metadata,
}

impl View {
    pub fn render(self, res: &Resource, obj: Value) -> Value {
        match self {
            View::Object => obj,
            View::Table => table::for_object(res, &obj),
            View::Metadata => partial(&obj),
        }
    }
}

/// An object as `PartialObjectMetadata` (meta.k8s.io/v1).
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `Warning` header value as kube-apiserver writes it: code 299, the text a quoted string
/// (quotes and backslashes escaped, as client-go unquotes them; control characters dropped).
pub fn warning_header(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 8);
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("299 - \"{quoted}\"")
}

/// An object answer (as a Table or metadata when asked), with `Warning` headers.
pub fn respond(ctx: &Ctx<'_>, code: u16, obj: Value, warnings: &[String]) -> HttpResponse {
    let body = ctx.view().render(ctx.res(), obj);
    let mut r = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(code).unwrap_or(actix_web::http::StatusCode::OK),
    );
    for w in warnings {
        r.append_header(("Warning", warning_header(w)));
    }
    r.content_type("application/json").body(body.to_string())
}
