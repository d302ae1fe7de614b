//! Lists as upstream serves them: `resourceVersion` with `resourceVersionMatch` (Exact,
//! NotOlderThan), pages cut by `limit` whose continue token carries the revision of the first
//! page (later pages read that snapshot from the store's history, or get 410 Expired once it
//! is gone), `remainingItemCount`, and upstream's validation of the options.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Ctx;
use crate::api::object;
use crate::api::selectors::{labels_of, FieldSelector, LabelSelector};
use crate::api::status::{ApiError, Cause};
use crate::store::{Consistency, KeyValue, StoreError};

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

/// A page of matching objects and its `ListMeta`.
pub struct Page {
    pub items: Vec<Listed>,
    /// The revision the page was read at (the first page's, for a continued list).
    pub revision: u64,
    /// The token for the next page.
    pub next: Option<String>,
    /// Objects after this page; only known for lists without selectors, as upstream.
    pub remaining: Option<usize>,
}

impl Page {
    pub fn list_meta(&self) -> Value {
        let mut meta = json!({ "resourceVersion": self.revision.to_string() });
        if let Some(n) = &self.next {
            meta["continue"] = json!(n);
        }
        if let (Some(r), Some(_)) = (self.remaining, &self.next) {
            meta["remainingItemCount"] = json!(r);
        }
        meta
    }
}

/// What to read: when, from where, how much.
#[derive(Debug, Clone, Default)]
pub struct ListRead {
    consistency: Consistency,
    /// Read the state as it was at this revision (Exact, or a continued list).
    at: Option<u64>,
    /// The answer must be at least this fresh (NotOlderThan).
    min: Option<u64>,
    /// Keys strictly after this one (a continue token's start).
    start_after: Option<String>,
    /// The token came with revision -1: the list goes on at the current state.
    inconsistent: bool,
    limit: usize,
}

impl ListRead {
    /// The whole current state, read as `consistency` says.
    pub fn current(consistency: Consistency) -> Self {
        ListRead {
            consistency,
            ..Default::default()
        }
    }

    /// The same read, answering only once the store has reached `rv`.
    pub fn not_older_than(mut self, rv: u64) -> Self {
        self.min = Some(rv);
        self
    }

    /// The read a list request asks for, its options validated as upstream's
    /// `ValidateListOptions` does.
    pub fn of_list(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let q = &ctx.q;
        let rv = q.given("resourceVersion");
        let cont = q.given("continue");
        let mut causes = Vec::new();
        if let Some(m) = q.given("resourceVersionMatch") {
            if rv.is_none() {
                causes.push(Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if cont.is_some() {
                causes.push(Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != "NotOlderThan" {
                causes.push(Cause::not_supported(
                    "resourceVersionMatch",
                    format!("{m:?}"),
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if m == "Exact" && rv == Some("0") {
                causes.push(Cause::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if q.get("sendInitialEvents").is_some() {
            causes.push(Cause::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", causes));
        }
        let limit = match q.given("limit") {
            None => 0,
            Some(l) => match l.parse::<i64>() {
                Ok(n) => n.max(0) as usize,
                Err(_) => return Err(ApiError::BadRequest(format!("invalid limit {l:?}"))),
            },
        };
        if let Some(token) = cont {
            if rv.is_some_and(|rv| rv != "0") {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let (start, at) = decode_continue(token, &ctx.res().scope_prefix(ctx.ns()))?;
            return Ok(ListRead {
                consistency: Consistency::Linearizable,
                at,
                inconsistent: at.is_none(),
                start_after: Some(start),
                limit,
                ..Default::default()
            });
        }
        let mut read = ListRead {
            limit,
            ..Default::default()
        };
        match rv {
            None => {}
            Some("0") => read.consistency = Consistency::Local,
            Some(rv) => {
                let n = parse_rv(rv)?;
                match q.given("resourceVersionMatch") {
                    Some("Exact") => read.at = Some(n),
                    _ => read.min = Some(n),
                }
            }
        }
        Ok(read)
    }
}

pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// The token upstream's storage encodes: `{"v","rv","start"}` in unpadded base64url, the start
/// key relative to the listed prefix.
#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

fn encode_continue(last_key: &str, prefix: &str, rv: i64) -> String {
    let start = format!("{}\0", last_key.strip_prefix(prefix).unwrap_or(last_key));
    let token = Token {
        v: TOKEN_VERSION.into(),
        rv,
        start,
    };
    let bytes = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The full start key and the revision (`None`: -1, the current state) of a token.
fn decode_continue(token: &str, prefix: &str) -> Result<(String, Option<u64>), ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("invalid continue token: {why}"));
    let generic = "continue key is not valid";
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| bad(format!("{generic}: {e}")))?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{generic}: {e}")))?;
    if t.v != TOKEN_VERSION {
        return Err(bad(format!(
            "{generic}: server does not recognize this encoded version {}",
            t.v
        )));
    }
    if t.rv == 0 {
        return Err(bad(format!(
            "{generic}: incorrect encoded start resourceVersion (version {TOKEN_VERSION})"
        )));
    }
    if t.start.is_empty() {
        return Err(bad(format!(
            "{generic}: encoded start key empty (version {TOKEN_VERSION})"
        )));
    }
    // As upstream: a start key that is not a clean path could reach outside the prefix.
    let key = t.start.strip_prefix('/').unwrap_or(&t.start);
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad(format!("{generic}: {}", t.start)));
    }
    let at = u64::try_from(t.rv).ok();
    Ok((format!("{prefix}{key}"), at))
}

/// Upstream's messages for a snapshot that left the history.
const EXPIRED_LIST: &str = "The resourceVersion for the provided list is too old.";
const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Matching objects of the target scope as `read` says. Objects are parsed only when a
/// selector needs it.
pub async fn list_objects(ctx: &Ctx<'_>, read: &ListRead) -> Result<Page, ApiError> {
    let res = ctx.res();
    let ls = LabelSelector::parse(ctx.q.get("labelSelector").unwrap_or(""))?;
    let fs = FieldSelector::parse(
        ctx.q.get("fieldSelector").unwrap_or(""),
        res.strategy.selectable_fields(),
    )?;
    let selecting = !ls.is_empty() || !fs.is_empty();
    let prefix = res.scope_prefix(ctx.ns());
    // Without selectors the store cuts the page; with them every key after the start is read.
    let store_limit = if selecting { 0 } else { read.limit };
    let page = ctx
        .state
        .store
        .list_at(
            &prefix,
            read.start_after.clone(),
            store_limit,
            read.at,
            read.consistency,
        )
        .await
        .map_err(|e| match e {
            StoreError::Expired { .. } => match &read.start_after {
                Some(start) => ApiError::Expired {
                    message: EXPIRED_CONTINUE.into(),
                    continue_token: Some(encode_continue(
                        start.trim_end_matches('\0'),
                        &prefix,
                        -1,
                    )),
                },
                None => ApiError::Expired {
                    message: EXPIRED_LIST.into(),
                    continue_token: None,
                },
            },
            e => ctx.store_err(e),
        })?;
    if let Some(min) = read.min {
        if page.revision < min {
            return Err(ApiError::from_store(
                StoreError::FutureRevision {
                    requested: min,
                    current: page.revision,
                },
                Default::default(),
            ));
        }
    }
    // A continued list keeps the first page's revision; one continued at -1 goes on with -1.
    let token_rv = if read.inconsistent {
        -1
    } else {
        page.revision as i64
    };
    if !selecting {
        let next = (read.limit > 0 && page.remaining > 0)
            .then(|| page.kvs.last())
            .flatten()
            .map(|kv| encode_continue(&kv.key, &prefix, token_rv));
        return Ok(Page {
            items: page
                .kvs
                .into_iter()
                .map(|kv| Listed { kv, obj: None })
                .collect(),
            revision: page.revision,
            next,
            remaining: Some(page.remaining),
        });
    }
    let mut items: Vec<Listed> = Vec::new();
    let mut next = None;
    for kv in page.kvs {
        let obj = object::from_kv(&kv)?;
        if !ls.matches(&labels_of(&obj)) || !fs.matches(&obj) {
            continue;
        }
        if read.limit > 0 && items.len() == read.limit {
            next = items
                .last()
                .map(|l| encode_continue(&l.kv.key, &prefix, token_rv));
            break;
        }
        items.push(Listed { kv, obj: Some(obj) });
    }
    Ok(Page {
        items,
        revision: page.revision,
        next,
        remaining: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_inside_their_prefix() {
        let prefix = "/registry/pods/default/";
        let t = encode_continue("/registry/pods/default/web-1", prefix, 42);
        assert_eq!(
            decode_continue(&t, prefix).expect("decodes"),
            ("/registry/pods/default/web-1\0".to_string(), Some(42))
        );
        let inconsistent = encode_continue("/registry/pods/default/a", prefix, -1);
        assert_eq!(decode_continue(&inconsistent, prefix).expect("-1").1, None);
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "a%C3%A9a".to_string(),
            "aéa".to_string(),
            "!!".to_string(),
            b64("{}"),
            b64(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"x"}"#),
            b64(r#"{"v":"meta.k8s.io/v1","rv":5,"start":""}"#),
            b64(r#"{"v":"meta.k8s.io/v1","rv":5,"start":"../../secrets/x"}"#),
            b64(r#"{"v":"other/v9","rv":5,"start":"x"}"#),
        ] {
            let e = decode_continue(&bad, prefix).expect_err(&bad);
            assert_eq!(e.code(), 400, "{bad}: {e}");
            assert!(e.to_string().starts_with("invalid continue token: "), "{e}");
        }
    }
}
