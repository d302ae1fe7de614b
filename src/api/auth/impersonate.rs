//! Impersonation, as upstream's filter: `Impersonate-User`, `-Group`, `-Uid` and
//! `-Extra-<key>` headers make a request run as another user, once the caller is allowed
//! the `impersonate` verb on each of them (`kubectl --as`, `--as-group`).

use std::collections::BTreeMap;

use actix_web::http::header::HeaderMap;

use super::{Attributes, UserInfo, AUTHENTICATED, SERVICE_ACCOUNT_PREFIX, UNAUTHENTICATED};
use crate::api::state::ApiState;
use crate::api::status::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .map(String::from)
        .collect()
}

/// The user a request runs as: `user`, or whom it impersonates when allowed to.
pub async fn resolve(
    state: &ApiState,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let name = values(headers, USER).into_iter().next().unwrap_or_default();
    let groups = values(headers, GROUP);
    let uid = values(headers, UID).into_iter().next().unwrap_or_default();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers.iter() {
        if let (Some(key), Ok(v)) = (k.as_str().strip_prefix(EXTRA), v.to_str()) {
            // Keys are percent-encoded in header names (upstream unescapes them).
            let key = percent_decode(key);
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    if name.is_empty() {
        if !groups.is_empty() || !uid.is_empty() || !extra.is_empty() {
            return Err(ApiError::BadRequest(
                "requested impersonation of groups, uid or extra without impersonating a user"
                    .into(),
            ));
        }
        return Ok(user);
    }
    // What must be allowed: (group, resource, subresource, namespace, name).
    let mut asks: Vec<(&str, &str, String, String, String)> = Vec::new();
    let account = name
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'));
    match account {
        Some((ns, sa)) => asks.push(("", "serviceaccounts", String::new(), ns.into(), sa.into())),
        None => asks.push(("", "users", String::new(), String::new(), name.clone())),
    }
    for g in &groups {
        asks.push(("", "groups", String::new(), String::new(), g.clone()));
    }
    if !uid.is_empty() {
        asks.push((
            "authentication.k8s.io",
            "uids",
            String::new(),
            String::new(),
            uid.clone(),
        ));
    }
    for (k, vs) in &extra {
        for v in vs {
            asks.push((
                "authentication.k8s.io",
                "userextras",
                k.clone(),
                String::new(),
                v.clone(),
            ));
        }
    }
    for (group, resource, subresource, namespace, target) in asks {
        let attrs = Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource,
            namespace,
            name: target,
            path: String::new(),
        };
        if let Some(refused) = super::authn::refusal(state, &attrs).await {
            return Err(refused);
        }
    }
    let mut all_groups = groups;
    if let Some((ns, _)) = account {
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !all_groups.contains(&g) {
                all_groups.push(g);
            }
        }
    }
    let implied = if name == super::ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !all_groups.iter().any(|g| g == implied) {
        all_groups.push(implied.into());
    }
    Ok(UserInfo {
        username: name,
        uid,
        groups: all_groups,
        extra,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(
            percent_decode("scopes.example.com%2Fa"),
            "scopes.example.com/a"
        );
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}
