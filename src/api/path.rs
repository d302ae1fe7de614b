//! Request paths: `/api/v1/...` and `/apis/{group}/{version}/...` to a resource target.

use super::resources::{self, Resource, Sub};
use super::status::ApiError;

#[derive(Debug)]
pub struct Target {
    pub res: &'static Resource,
    /// The namespace in the path (`None`: cluster-scoped or across all namespaces).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Sub>,
}

pub fn not_found() -> ApiError {
    ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        subject: Default::default(),
    }
}

fn sub(res: &Resource, s: &str) -> Result<Sub, ApiError> {
    res.subresources
        .iter()
        .copied()
        .find(|x| x.name() == s)
        .ok_or_else(not_found)
}

/// Parses the part after the group-version, e.g. `namespaces/default/pods/web/status`.
pub fn parse(group: &str, version: &str, rest: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let target = |res, namespace: Option<&str>, name: Option<&str>, sub| Target {
        res,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        sub,
    };
    match segs.as_slice() {
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let res = find(plural)?;
            match tail {
                [] => Ok(target(res, Some(ns), None, None)),
                [name] => Ok(target(res, Some(ns), Some(name), None)),
                [name, s] => Ok(target(res, Some(ns), Some(name), Some(sub(res, s)?))),
                _ => Err(not_found()),
            }
        }
        [plural] => Ok(target(find(plural)?, None, None, None)),
        [plural, name] => {
            let res = find(plural)?;
            if res.namespaced {
                return Err(not_found());
            }
            Ok(target(res, None, Some(name), None))
        }
        [plural, name, s] => {
            let res = find(plural)?;
            if res.namespaced {
                return Err(not_found());
            }
            Ok(target(res, None, Some(name), Some(sub(res, s)?)))
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_namespaced_cluster_and_subresources() {
        let t = parse("", "v1", "namespaces/default/pods/web/status").expect("pod status");
        assert_eq!(
            (
                t.res.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub
            ),
            ("pods", Some("default"), Some("web"), Some(Sub::Status))
        );
        let t = parse("", "v1", "namespaces/default").expect("a namespace");
        assert_eq!(
            (t.res.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse("", "v1", "namespaces/default/status").expect("namespace status");
        assert_eq!(t.sub, Some(Sub::Status));
        let t = parse("apps", "v1", "deployments").expect("all deployments");
        assert_eq!((t.res.plural, t.namespace), ("deployments", None));
        assert!(
            parse("", "v1", "pods/web").is_err(),
            "namespaced item needs a namespace"
        );
        assert!(parse("", "v1", "widgets").is_err());
        assert!(parse("", "v1", "namespaces/default/pods/web/scale").is_err());
    }
}
