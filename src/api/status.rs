//! API errors as Kubernetes `metav1.Status` responses with the upstream reason and code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};
use thiserror::Error;

use crate::store::StoreError;

/// One `details.causes` entry: which field is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        why: impl std::fmt::Display,
    ) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {why}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {why}"),
        }
    }

    pub fn too_long(field: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: {why}"),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: impl std::fmt::Display) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        allowed: &[&str],
    ) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                allowed.join(", ")
            ),
        }
    }
}

/// Who an error is about: `details` of the Status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The resource (plural), or for `Invalid` the Kind, as upstream does.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{message}")]
    NotFound { message: String, subject: Subject },
    #[error("{message}")]
    AlreadyExists { message: String, subject: Subject },
    #[error("{message}")]
    Conflict { message: String, subject: Subject },
    #[error("{message}")]
    Invalid {
        message: String,
        subject: Subject,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials: 401.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 410: the revision asked for left the store's history. A continued list gets a token
    /// that goes on at the current state.
    #[error("{message}")]
    Expired {
        message: String,
        continue_token: Option<String>,
    },
    /// 504: a revision the store has not reached.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Over the in-flight limits: 429, retry after a second.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    #[error("Timeout: request did not complete within the allotted timeout")]
    Timeout,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Expired { .. } => "Expired",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::TooManyRequests => "TooManyRequests",
            ApiError::Timeout => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Expired { .. } => 410,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::TooLarge(_) => 413,
            ApiError::Unavailable(_) => 503,
            ApiError::TooManyRequests => 429,
            ApiError::Timeout => 504,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn not_found(subject: Subject) -> Self {
        ApiError::NotFound {
            message: format!("{} \"{}\" not found", qualified(&subject), subject.name),
            subject,
        }
    }

    pub fn already_exists(subject: Subject) -> Self {
        ApiError::AlreadyExists {
            message: format!(
                "{} \"{}\" already exists",
                qualified(&subject),
                subject.name
            ),
            subject,
        }
    }

    pub fn conflict(subject: Subject) -> Self {
        ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(&subject),
                subject.name
            ),
            subject,
        }
    }

    /// 422 with causes; `kind` is the object's Kind (`Deployment`), as kubectl prints it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let what = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        ApiError::Invalid {
            message: format!("{qualified_kind} \"{name}\" is invalid: {what}"),
            subject: Subject {
                group: group.into(),
                kind: kind.into(),
                name: name.into(),
            },
            causes,
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { subject, .. }
            | ApiError::AlreadyExists { subject, .. }
            | ApiError::Conflict { subject, .. } => Some(details(subject, &[])),
            ApiError::Invalid {
                subject, causes, ..
            } => Some(details(subject, causes)),
            ApiError::TooManyRequests | ApiError::Unavailable(_) => {
                Some(json!({ "retryAfterSeconds": 1 }))
            }
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        if let ApiError::Expired {
            continue_token: Some(t),
            ..
        } = self
        {
            status["metadata"] = json!({ "continue": t });
        }
        status
    }

    /// The Status as kube-apiserver writes it: its fields in Go's struct order (kind,
    /// apiVersion, metadata, status, message, reason, details, code), which some clients
    /// and tests compare byte for byte.
    pub fn body(&self) -> String {
        let v = self.status();
        let mut out = String::from("{");
        for (i, (key, val)) in [
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ]
        .into_iter()
        .filter_map(|k| v.get(k).map(|val| (k, val)))
        .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{}:{val}", json!(key)));
        }
        out.push('}');
        out
    }

    /// Maps a store error for an object; `subject` names it in the message.
    pub fn from_store(e: StoreError, subject: Subject) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(subject),
            StoreError::AlreadyExists { .. } => ApiError::already_exists(subject),
            StoreError::Conflict { .. } => ApiError::conflict(subject),
            StoreError::Expired {
                requested,
                compacted,
            } => ApiError::Expired {
                message: format!("too old resource version: {requested} ({compacted})"),
                continue_token: None,
            },
            StoreError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            StoreError::Unavailable(m) | StoreError::ProposalDropped(m) => {
                ApiError::Unavailable(format!("storage unavailable: {m}"))
            }
            StoreError::Stopped => ApiError::Unavailable("storage stopped".into()),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::Storage(m) => ApiError::Internal(m),
            StoreError::Transformation(m) => ApiError::Internal(m),
        }
    }
}

fn qualified(s: &Subject) -> String {
    if s.group.is_empty() {
        s.kind.clone()
    } else {
        format!("{}.{}", s.kind, s.group)
    }
}

fn details(s: &Subject, causes: &[Cause]) -> Value {
    let mut d = json!({ "name": s.name, "kind": s.kind });
    if !s.group.is_empty() {
        d["group"] = json!(s.group);
    }
    if !causes.is_empty() {
        d["causes"] = causes
            .iter()
            .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
            .collect();
    }
    d
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if matches!(
            self,
            ApiError::Unavailable(_)
                | ApiError::TooManyRequests
                | ApiError::TooLargeResourceVersion { .. }
        ) {
            r.insert_header(("Retry-After", "1"));
        }
        r.content_type("application/json").body(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_upstream() {
        let e = ApiError::not_found(Subject {
            group: "apps".into(),
            kind: "deployments".into(),
            name: "x".into(),
        });
        let s = e.status();
        assert_eq!(s["message"], "deployments.apps \"x\" not found");
        assert_eq!(
            (s["reason"].as_str(), s["code"].as_u64()),
            (Some("NotFound"), Some(404))
        );
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn status_fields_come_in_kube_apiservers_order() {
        let e = ApiError::not_found(Subject {
            group: "".into(),
            kind: "pods".into(),
            name: "x".into(),
        });
        assert_eq!(
            e.body(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"kind":"pods","name":"x"},"code":404}"#
        );
        let parsed: Value = serde_json::from_str(&e.body()).expect("json");
        assert_eq!(parsed, e.status());
    }

    #[test]
    fn invalid_lists_causes_with_fields() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "x",
            vec![Cause::required("spec.selector")],
        );
        let s = e.status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["kind"], "Deployment");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.selector");
        assert_eq!(
            s["message"],
            "Deployment.apps \"x\" is invalid: spec.selector: Required value"
        );
    }
}
