//! ServiceAccounts in the API server: upstream's ServiceAccount admission of new pods (the
//! `default` account, the account must exist, the projected `kube-api-access-*` token volume
//! mounted at `/var/run/secrets/kubernetes.io/serviceaccount`) and the TokenRequest API
//! (`POST .../serviceaccounts/NAME/token`, authentication.k8s.io/v1), whose tokens are signed
//! with the cluster's token key and carry upstream's claims.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use rand::Rng;
use serde_json::{json, Value};
use tracing::warn;

use super::auth::{UserInfo, SERVICE_ACCOUNT_PREFIX};
use super::body;
use super::object;
use super::request::Ctx;
use super::resources;
use super::status::{ApiError, Cause, Subject};
use crate::pki::jwt::{self, Claims, KubernetesClaims, Ref};
use crate::store::{Consistency, StoreClient, StoreError};

/// The account every namespace has and pods run as unless they name another.
pub const DEFAULT_ACCOUNT: &str = "default";
/// Where containers find their token, the cluster CA and their namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Name prefix of the projected token volume admission adds (upstream's `kube-api-access-`).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap with the cluster CA in every namespace (the root CA publisher's).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: the lifetime of admission's projected
/// tokens (the node refreshes them at 80 %).
pub const PROJECTED_TOKEN_SECONDS: i64 = 3607;
/// `spec.expirationSeconds` of a TokenRequest that sets none.
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// Upstream's `MinTokenAgeSec`: shorter requests are invalid.
pub const MIN_TOKEN_SECONDS: i64 = 600;
/// Longer requests are shortened to this, with a warning (upstream's
/// `--service-account-max-token-expiration`).
pub const MAX_TOKEN_SECONDS: i64 = 48 * 3600;

const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// Random suffixes as upstream's `SimpleNameGenerator` (no vowels, no look-alikes).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// A pod created from a node's manifest; ServiceAccount admission leaves it alone.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn service_accounts() -> &'static resources::Resource {
    resources::find("", "v1", "serviceaccounts").expect("serviceaccounts are served")
}

fn sa_key(ns: &str, name: &str) -> String {
    service_accounts().key(Some(ns), name)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `serviceAccountName` of a pod spec: the field, else the deprecated `serviceAccount`, else
/// `default`; both fields are set to it (upstream's conversion shows both).
pub fn default_account(spec: &mut Value) -> String {
    let name = [
        str_at(spec, "/serviceAccountName"),
        str_at(spec, "/serviceAccount"),
    ]
    .into_iter()
    .find(|n| !n.is_empty())
    .unwrap_or(DEFAULT_ACCOUNT)
    .to_string();
    if let Some(s) = spec.as_object_mut() {
        s.insert("serviceAccountName".into(), json!(name));
        s.insert("serviceAccount".into(), json!(name));
    }
    name
}

/// Whether the pod gets a token: the pod's `automountServiceAccountToken`, else the
/// account's, else true.
pub fn should_automount(spec: &Value, account: &Value) -> bool {
    spec.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// Upstream's `TokenVolumeSource`: the token, the cluster CA and the namespace.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": PROJECTED_TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Upstream's `mountServiceAccountToken`: every container and init container without a mount
/// at the token path mounts the token volume read-only; the volume is added when one does
/// (an existing `kube-api-access-*` volume is reused).
pub fn mount_token(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    let existing = s
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(String::from);
    let has_volume = existing.is_some();
    let name = existing.unwrap_or_else(|| {
        let mut rng = rand::thread_rng();
        let suffix: String = (0..5)
            .map(|_| NAME_CHARS[rng.gen_range(0..NAME_CHARS.len())] as char)
            .collect();
        format!("{TOKEN_VOLUME_PREFIX}{suffix}")
    });
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(cs)) = s.get_mut(list) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            mounts.push(mount.clone());
            needs_volume = true;
        }
    }
    if needs_volume && !has_volume {
        let volumes = s.entry("volumes").or_insert_with(|| json!([]));
        if volumes.is_null() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&name));
        }
    }
}

/// Upstream's `getServiceAccount`: the store, then a few more reads for `default` (its
/// controller may be about to create it in a new namespace).
async fn find_account(store: &StoreClient, ns: &str, name: &str) -> Result<Value, ApiError> {
    let attempts = if name == DEFAULT_ACCOUNT { 10 } else { 2 };
    let key = sa_key(ns, name);
    for attempt in 0..attempts {
        if attempt > 1 {
            let ms = rand::thread_rng().gen_range(100..200);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        // The first read is this replica's; the others are linearizable.
        let consistency = if attempt == 0 {
            Consistency::Local
        } else {
            Consistency::Linearizable
        };
        let got = store
            .get(&key, consistency)
            .await
            .map_err(|e| ApiError::from_store(e, object::subject(service_accounts(), name)))?;
        if let Some(kv) = got {
            return object::from_kv(&kv);
        }
    }
    Err(ApiError::NotFound {
        message: format!("serviceaccount \"{name}\" not found"),
        subject: object::subject(service_accounts(), name),
    })
}

/// ServiceAccount admission of a pod being created (after defaulting of the name and
/// namespace, before validation).
pub async fn admit_pod(ctx: &Ctx<'_>, pod: &mut Value) -> Result<(), ApiError> {
    let annotations = pod.pointer("/metadata/annotations");
    if annotations.is_some_and(|a| a.get(MIRROR_ANNOTATION).is_some()) {
        return Ok(());
    }
    let ns = str_at(pod, "/metadata/namespace").to_string();
    let pod_name = object::name_of(pod).to_string();
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return Ok(()); // validation refuses it
    };
    let account = default_account(spec);
    let sa = match find_account(&ctx.state.store, &ns, &account).await {
        Ok(sa) => sa,
        Err(e) => {
            let what = if pod_name.is_empty() {
                "pods".to_string()
            } else {
                format!("pods \"{pod_name}\"")
            };
            return Err(ApiError::Forbidden(format!(
                "{what} is forbidden: error looking up service account {ns}/{account}: {e}"
            )));
        }
    };
    if should_automount(spec, &sa) {
        mount_token(spec);
    }
    Ok(())
}

/// Creates the `default` ServiceAccount of `ns` if it is missing. The controller keeps it
/// there; the API server makes one with a namespace it creates, so pods can be created at
/// once (and in clusters whose controllers are off).
pub async fn ensure_default(store: &StoreClient, ns: &str) {
    let res = service_accounts();
    let mut obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_ACCOUNT}});
    if let Err(e) = object::prepare_create(res, &mut obj, Some(ns)) {
        warn!(namespace = %ns, "default serviceaccount: {e}");
        return;
    }
    let Ok(bytes) = object::to_bytes(&obj) else {
        return;
    };
    for _ in 0..50 {
        match store
            .create(&res.key(Some(ns), DEFAULT_ACCOUNT), bytes.clone())
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => return,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => {
                warn!(namespace = %ns, "default serviceaccount: {e}");
                return;
            }
        }
    }
}

/// The `default` ServiceAccount of the namespaces a new cluster has.
pub async fn bootstrap(store: StoreClient) {
    for ns in super::namespaces::SYSTEM {
        ensure_default(&store, ns).await;
    }
}

/// What a TokenRequest asks for, defaulted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// (apiVersion, kind, name, uid) of the object the token is bound to.
    pub bound: Option<BoundRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(AUTHENTICATION_GROUP, "TokenRequest", name, causes)
}

/// The spec of a TokenRequest body with upstream's defaults and validation.
pub fn token_spec(req: &Value) -> Result<TokenSpec, ApiError> {
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    let audiences = if audiences.is_empty() {
        vec![jwt::AUDIENCE.to_string()]
    } else {
        audiences
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_TOKEN_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "spec.expirationSeconds must be an integer (got {v})"
            ))
        })?,
    };
    if expiration_seconds < MIN_TOKEN_SECONDS {
        return Err(invalid(
            "",
            vec![Cause::invalid(
                "spec.expirationSeconds",
                expiration_seconds,
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if expiration_seconds > 1 << 32 {
        return Err(invalid(
            "",
            vec![Cause::invalid(
                "spec.expirationSeconds",
                expiration_seconds,
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    let bound = spec
        .get("boundObjectRef")
        .filter(|r| r.is_object())
        .map(|r| BoundRef {
            api_version: str_at(r, "/apiVersion").to_string(),
            kind: str_at(r, "/kind").to_string(),
            name: str_at(r, "/name").to_string(),
            uid: str_at(r, "/uid").to_string(),
        });
    Ok(TokenSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// Upstream's `token.Claims` for a ServiceAccount (and the pod the token is bound to).
pub fn token_claims(
    ns: &str,
    account: (&str, &str),
    pod: Option<(&str, &str)>,
    audiences: &[String],
    now: i64,
    expiration_seconds: i64,
) -> Claims {
    let (sa_name, sa_uid) = account;
    Claims {
        iss: jwt::ISSUER.into(),
        sub: format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{sa_name}"),
        aud: audiences.to_vec(),
        exp: Some(now + expiration_seconds),
        iat: now,
        nbf: Some(now),
        groups: Vec::new(),
        kubernetes: Some(KubernetesClaims {
            namespace: ns.into(),
            serviceaccount: Ref {
                name: sa_name.into(),
                uid: sa_uid.into(),
            },
            pod: pod.map(|(name, uid)| Ref {
                name: name.into(),
                uid: uid.into(),
            }),
        }),
    }
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The pod a token is to be bound to, checked as upstream's TokenREST (and, for a node
/// asking, NodeRestriction): (name, uid).
async fn bound_pod(
    ctx: &Ctx<'_>,
    ns: &str,
    account: &str,
    bound: Option<&BoundRef>,
    user: &UserInfo,
) -> Result<Option<(String, String)>, ApiError> {
    let node = user.node_name();
    let Some(r) = bound else {
        if node.is_some() {
            return Err(forbidden_token(
                account,
                "node requested token not bound to a pod",
            ));
        }
        return Ok(None);
    };
    let group = r.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    if !(group.is_empty() && r.kind == "Pod") {
        let gvk = if r.api_version.is_empty() {
            format!(", Kind={}", r.kind)
        } else {
            format!("{}, Kind={}", r.api_version, r.kind)
        };
        if node.is_some() {
            return Err(forbidden_token(
                account,
                &format!("node requested token bound to a {}", r.kind),
            ));
        }
        return Err(ApiError::BadRequest(format!(
            "cannot bind token to object of type {gvk}"
        )));
    }
    let pods = resources::find("", "v1", "pods").expect("pods are served");
    let kv = ctx
        .state
        .store
        .get(&pods.key(Some(ns), &r.name), Consistency::Linearizable)
        .await
        .map_err(|e| ApiError::from_store(e, object::subject(pods, &r.name)))?
        .ok_or_else(|| ApiError::not_found(object::subject(pods, &r.name)))?;
    let pod = object::from_kv(&kv)?;
    let uid = str_at(&pod, "/metadata/uid").to_string();
    if str_at(&pod, "/spec/serviceAccountName") != account {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount \"{account}\" to pod running with different serviceaccount name."
        )));
    }
    if !r.uid.is_empty() && r.uid != uid {
        let why = format!("the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated", r.uid);
        if node.is_some() {
            return Err(forbidden_token(account, &why));
        }
        return Err(ApiError::Conflict {
            message: format!("Operation cannot be fulfilled on Pod \"{}\": {why}", r.name),
            subject: Subject {
                group: String::new(),
                kind: "Pod".into(),
                name: r.name.clone(),
            },
        });
    }
    if let Some(node) = node {
        if str_at(&pod, "/spec/nodeName") != node {
            return Err(forbidden_token(
                account,
                "node requested token bound to a pod scheduled on a different node",
            ));
        }
    }
    Ok(Some((r.name.clone(), uid)))
}

fn forbidden_token(account: &str, why: &str) -> ApiError {
    ApiError::Forbidden(format!("serviceaccounts \"{account}\" is forbidden: {why}"))
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a TokenRequest answered with a
/// signed token (201), as upstream's TokenREST.
pub async fn token_request(ctx: &Ctx<'_>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload).await?;
    let req = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode(ctx.content_type(), &bytes)?
    };
    if !req.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    if let Some(k) = req
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    {
        if k != "TokenRequest" {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind (TokenRequest)"
            )));
        }
    }
    let ns = ctx.ns().unwrap_or("default").to_string();
    let name = ctx.name().to_string();
    let given_name = str_at(&req, "/metadata/name");
    if !given_name.is_empty() && given_name != name {
        return Err(invalid(
            &name,
            vec![Cause::invalid(
                "metadata.name",
                given_name,
                "must match the service account name if specified",
            )],
        ));
    }
    let given_ns = str_at(&req, "/metadata/namespace");
    if !given_ns.is_empty() && given_ns != ns {
        return Err(invalid(
            &name,
            vec![Cause::invalid(
                "metadata.namespace",
                given_ns,
                "must match the service account namespace if specified",
            )],
        ));
    }
    let (sa, _) = ctx.load().await?;
    let sa_uid = str_at(&sa, "/metadata/uid").to_string();
    let mut spec = token_spec(&req)?;
    let now = jwt::now();
    let user = UserInfo::of(ctx.req);
    let pod = bound_pod(ctx, &ns, &name, spec.bound.as_ref(), &user).await?;
    let mut warnings = Vec::new();
    if spec.expiration_seconds > MAX_TOKEN_SECONDS {
        warnings.push(format!(
            "requested expiration of {} seconds shortened to {MAX_TOKEN_SECONDS} seconds",
            spec.expiration_seconds
        ));
        spec.expiration_seconds = MAX_TOKEN_SECONDS;
    }
    let claims = token_claims(
        &ns,
        (&name, &sa_uid),
        pod.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
        &spec.audiences,
        now,
        spec.expiration_seconds,
    );
    let token = ctx
        .state
        .authn
        .keys
        .sign(&claims)
        .map_err(|e| ApiError::Internal(format!("failed to generate token: {e}")))?;
    let mut out_spec = json!({
        "audiences": spec.audiences,
        "expirationSeconds": spec.expiration_seconds,
        "boundObjectRef": null,
    });
    match (&spec.bound, req.pointer("/spec/boundObjectRef")) {
        (Some(_), Some(given)) => out_spec["boundObjectRef"] = given.clone(),
        _ => {
            if let Some(m) = out_spec.as_object_mut() {
                m.remove("boundObjectRef");
            }
        }
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": format!("{AUTHENTICATION_GROUP}/v1"),
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": rfc3339(now)},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(now + spec.expiration_seconds)},
    });
    let mut r = HttpResponse::Created();
    for w in &warnings {
        r.append_header(("Warning", super::request::warning_header(w)));
    }
    Ok(r.content_type("application/json").body(out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_default_to_the_default_account_and_mount_its_token() {
        let mut spec = json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "b", "image": "busybox"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        });
        assert_eq!(default_account(&mut spec), "default");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert!(should_automount(&spec, &json!({})));
        mount_token(&mut spec);
        let vols = spec["volumes"].as_array().expect("volumes");
        assert_eq!(vols.len(), 2);
        let name = vols[1]["name"].as_str().expect("name");
        assert!(name.starts_with("kube-api-access-"), "{name}");
        assert_eq!(name.len(), "kube-api-access-".len() + 5);
        assert_eq!(
            vols[1]["projected"],
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]})
        );
        let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(spec["containers"][1]["volumeMounts"], json!([mount]));
        // Admitting again (an existing volume) adds nothing.
        let before = spec.clone();
        mount_token(&mut spec);
        assert_eq!(spec, before);
    }

    #[test]
    fn named_accounts_opt_outs_and_own_mounts() {
        let mut spec =
            json!({"serviceAccount": "robot", "containers": [{"name": "a", "image": "x"}]});
        assert_eq!(default_account(&mut spec), "robot");
        assert_eq!(spec["serviceAccountName"], "robot");
        // The pod's setting wins over the account's.
        let pod_off = json!({"automountServiceAccountToken": false});
        assert!(!should_automount(&pod_off, &json!({})));
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(!should_automount(&json!({}), &sa_off));
        let pod_on = json!({"automountServiceAccountToken": true});
        assert!(should_automount(&pod_on, &sa_off));
        // A container with its own mount at the token path keeps it; no volume if none needs it.
        let mut own = json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [
            {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}], "volumes": [{"name": "mine", "emptyDir": {}}]});
        let before = own.clone();
        mount_token(&mut own);
        assert_eq!(own, before);
    }

    #[test]
    fn token_requests_default_validate_and_carry_upstream_claims() {
        let spec = token_spec(&json!({})).expect("empty spec");
        assert_eq!(
            spec,
            TokenSpec {
                audiences: vec![jwt::AUDIENCE.to_string()],
                expiration_seconds: 3600,
                bound: None
            }
        );
        let short = json!({"spec": {"expirationSeconds": 599}});
        assert!(matches!(token_spec(&short), Err(ApiError::Invalid { .. })));
        let bound = json!({"spec": {"audiences": ["vault"], "expirationSeconds": 7200,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"}}});
        let spec = token_spec(&bound).expect("bound spec");
        assert_eq!(spec.audiences, vec!["vault".to_string()]);
        assert_eq!(spec.expiration_seconds, 7200);
        assert_eq!(spec.bound.as_ref().map(|b| b.name.as_str()), Some("web"));

        let c = token_claims(
            "ns1",
            ("robot", "sa-uid"),
            Some(("web", "pod-uid")),
            &[jwt::AUDIENCE.to_string()],
            1000,
            3600,
        );
        let v = serde_json::to_value(&c).expect("claims");
        assert_eq!(
            v,
            json!({
                "iss": jwt::ISSUER, "sub": "system:serviceaccount:ns1:robot",
                "aud": [jwt::AUDIENCE], "exp": 4600, "iat": 1000, "nbf": 1000,
                "kubernetes.io": {"namespace": "ns1",
                    "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                    "pod": {"name": "web", "uid": "pod-uid"}},
            })
        );
        // Signed with the cluster key, it verifies as this ServiceAccount's token.
        let (private, _) = crate::pki::TokenKeys::generate().expect("keys");
        let keys = crate::pki::TokenKeys::from_private_pem(&private).expect("keys");
        let now = jwt::now();
        let c = token_claims(
            "ns1",
            ("robot", "sa-uid"),
            None,
            &[jwt::AUDIENCE.to_string()],
            now,
            600,
        );
        let t = keys.sign(&c).expect("sign");
        assert_eq!(keys.verify(&t), Some(c));
        // Another audience is not ours.
        let other = token_claims("ns1", ("robot", "u"), None, &["vault".into()], now, 600);
        assert_eq!(keys.verify(&keys.sign(&other).expect("sign")), None);
    }
}
