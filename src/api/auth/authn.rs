//! Authentication: a client certificate from the cluster CA (user = CN, groups = O), or a
//! bearer token signed by the cluster (admin, components, ServiceAccounts). Requests without
//! either are anonymous, and anonymous requests reach only health, version and the CA.

use std::any::Any;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use futures_util::StreamExt;

use super::{Attributes, Decision, UserInfo, AUTHENTICATED, SERVICE_ACCOUNT_PREFIX};
use crate::api::state::ApiState;
use crate::api::status::ApiError;
use crate::pki::jwt::Claims;
use crate::pki::TokenKeys;
use crate::store::{Consistency, StoreClient};

/// The user named by a connection's client certificate (set when the TLS session starts).
#[derive(Clone)]
pub struct PeerUser(pub UserInfo);

/// actix `on_connect`: remembers the verified client certificate's subject.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    // rustls verified the chain to the cluster CA during the handshake.
    let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    if let Ok((cn, mut groups)) = crate::pki::identity::subject_of_der(cert.as_ref()) {
        if !cn.is_empty() {
            groups.push(AUTHENTICATED.into());
            ext.insert(PeerUser(UserInfo {
                username: cn,
                groups,
                ..Default::default()
            }));
        }
    }
}

/// What the authentication middleware needs.
pub struct Authn {
    pub keys: TokenKeys,
    pub store: StoreClient,
}

/// Paths anonymous callers may use (upstream's `system:public-info-viewer`, plus joining).
pub fn public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/cacerts" | "/skiff/v1/join"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

impl Authn {
    /// The user a bearer token for the API names, if it is valid and what it is bound to
    /// still exists.
    pub async fn token_user(&self, token: &str) -> Option<UserInfo> {
        let api = [crate::pki::jwt::AUDIENCE.to_string()];
        self.token_user_for(token, &api).await.map(|(user, _)| user)
    }

    /// As `token_user` for a token meant for one of `audiences` (a TokenReview), with those
    /// it is valid for.
    pub async fn token_user_for(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Option<(UserInfo, Vec<String>)> {
        let (claims, valid) = self.keys.verify_for(token, audiences)?;
        let user = match &claims.kubernetes {
            None => Some(UserInfo {
                username: claims.sub.clone(),
                groups: claims
                    .groups
                    .iter()
                    .cloned()
                    .chain([AUTHENTICATED.to_string()])
                    .collect(),
                ..Default::default()
            }),
            Some(_) => self.service_account(&claims).await,
        }?;
        Some((user, valid))
    }

    /// A ServiceAccount token is valid while its ServiceAccount (and pod, if bound) exists
    /// with the uid it was issued for: deleting them revokes it.
    async fn service_account(&self, claims: &Claims) -> Option<UserInfo> {
        let k = claims.kubernetes.as_ref()?;
        let ns = &k.namespace;
        let sa = &k.serviceaccount;
        if claims.sub != format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{}", sa.name) {
            return None;
        }
        if !self
            .uid_is(
                &format!("/registry/serviceaccounts/{ns}/{}", sa.name),
                &sa.uid,
            )
            .await
        {
            return None;
        }
        let mut extra = std::collections::BTreeMap::new();
        if let Some(pod) = &k.pod {
            if !self
                .uid_is(&format!("/registry/pods/{ns}/{}", pod.name), &pod.uid)
                .await
            {
                return None;
            }
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_string(),
                vec![pod.uid.clone()],
            );
        }
        Some(UserInfo {
            username: claims.sub.clone(),
            uid: sa.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                AUTHENTICATED.into(),
            ],
            extra,
        })
    }

    async fn uid_is(&self, key: &str, uid: &str) -> bool {
        let Ok(Some(kv)) = self.store.get(key, Consistency::Local).await else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&kv.value)
            .ok()
            .and_then(|o| o["metadata"]["uid"].as_str().map(|u| u == uid))
            .unwrap_or(false)
    }
}

fn bearer(req: &ServiceRequest) -> Option<Result<String, ()>> {
    let h = req.headers().get("authorization")?;
    let token = h
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    Some(token.ok_or(()))
}

/// Reads (and drops) what is left of a refused request's body: closing a connection with
/// unread data resets it, and the client would lose the answer with it.
pub async fn drain(req: &mut ServiceRequest) {
    let (_, payload) = req.parts_mut();
    let mut left: usize = 1 << 20;
    while let Some(Ok(chunk)) = payload.next().await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            break;
        }
    }
}

/// The middleware: puts the caller's `UserInfo` into the request; 401 for a bad token or for
/// anonymous requests outside the public paths.
pub async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(authn) = req.app_data::<web::Data<Authn>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // The join request carries the cluster token, checked by its handler.
    let joining = req.path() == crate::pki::join::JOIN_PATH;
    let user = match bearer(&req) {
        Some(_) if joining => None,
        Some(Ok(token)) => match authn.token_user(&token).await {
            Some(u) => Some(u),
            None => {
                drain(&mut req).await;
                return Err(ApiError::Unauthorized.into());
            }
        },
        Some(Err(())) => {
            drain(&mut req).await;
            return Err(ApiError::Unauthorized.into());
        }
        None => req.conn_data::<PeerUser>().map(|p| p.0.clone()),
    };
    let path = req.path().to_string();
    let user = match user {
        Some(u) => u,
        None if public(&path) => UserInfo::anonymous(),
        None => {
            drain(&mut req).await;
            return Err(ApiError::Unauthorized.into());
        }
    };
    let user = match req.app_data::<web::Data<ApiState>>().cloned() {
        Some(state) if !user.is_anonymous() => {
            match super::impersonate::resolve(&state, user, req.headers()).await {
                Ok(u) => u,
                Err(e) => {
                    drain(&mut req).await;
                    return Err(e.into());
                }
            }
        }
        _ => user,
    };
    req.extensions_mut().insert(user.clone());
    // Resource requests are authorized by their handler, which knows the resource.
    if !resource_path(&path) && !public(&path) {
        if let Some(state) = req.app_data::<web::Data<ApiState>>().cloned() {
            let attrs = Attributes {
                user,
                verb: req.method().as_str().to_ascii_lowercase(),
                resource_request: false,
                path,
                ..Default::default()
            };
            if let Some(refused) = refusal(&state, &attrs).await {
                drain(&mut req).await;
                return Err(refused.into());
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The 403 for a request the authorizers do not allow.
pub async fn refusal(state: &ApiState, attrs: &Attributes) -> Option<ApiError> {
    match super::authorize(state, attrs).await {
        Decision::Allow => None,
        Decision::Deny(why) => Some(ApiError::Forbidden(super::forbidden_message(attrs, &why))),
        Decision::NoOpinion => Some(ApiError::Forbidden(super::forbidden_message(attrs, ""))),
    }
}

/// Whether a path names resources (`/api/v1/...`, `/apis/GROUP/VERSION/...`) rather than
/// discovery or another non-resource endpoint.
pub fn resource_path(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.first() {
        Some(&"api") => segs.len() > 2,
        Some(&"apis") => segs.len() > 3,
        _ => false,
    }
}
