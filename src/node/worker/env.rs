//! A container's environment and command line as upstream: image env, then the container's
//! `env` (valueFrom configMapKeyRef, secretKeyRef, fieldRef) and `envFrom`; command/args
//! against the image's entrypoint/cmd, with `$(VAR)` expansion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{Api, Client};

use crate::node::image::ImageConfig;
use crate::node::NodeError;

/// `$(NAME)` -> its value when defined; `$$(NAME)` -> `$(NAME)`; anything else unchanged.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(end) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + end]),
            }
            rest = &tail[3 + end..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn field_ref(pod: &Pod, path: &str, pod_ip: &str) -> Result<String, NodeError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(pod_ip.to_string()),
        "status.hostIP" => pod.status.as_ref().and_then(|s| s.host_ip.clone()),
        p => {
            let label = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
                p.strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix("['").and_then(|k| k.strip_suffix("']")))
                    .map(|k| {
                        map.as_ref()
                            .and_then(|m| m.get(k).cloned())
                            .unwrap_or_default()
                    })
            };
            match label("metadata.labels", &m.labels)
                .or_else(|| label("metadata.annotations", &m.annotations))
            {
                Some(v) => Some(v),
                None => return Err(NodeError::Pod(format!("unsupported fieldRef {p:?}"))),
            }
        }
    };
    Ok(v.unwrap_or_default())
}

/// Looks up ConfigMaps and Secrets once per container start.
struct Lookup<'a> {
    client: &'a Client,
    ns: &'a str,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Lookup<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, NodeError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
            self.config_maps
                .insert(name.into(), api.get_opt(name).await?);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, NodeError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
            self.secrets.insert(name.into(), api.get_opt(name).await?);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

/// The container's environment, in order, as `NAME=value`.
pub async fn environment(
    client: &Client,
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    pod_ip: &str,
    hostname: &str,
) -> Result<Vec<String>, NodeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut lookup = Lookup {
        client,
        ns,
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut order: Vec<String> = Vec::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let set =
        |order: &mut Vec<String>, vars: &mut BTreeMap<String, String>, k: String, v: String| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(&mut order, &mut vars, k.into(), v.into());
    }
    set(&mut order, &mut vars, "HOSTNAME".into(), hostname.into());
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookup.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.clone().unwrap_or_default() {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(NodeError::Config(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )))
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match lookup.secret(&r.name).await? {
                Some(s) => {
                    let keys: Vec<String> = s.data.iter().flat_map(|d| d.keys().cloned()).collect();
                    for k in keys {
                        let v = secret_value(s, &k).unwrap_or_default();
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(NodeError::Config(format!(
                        "secret \"{}\" not found",
                        r.name
                    )))
                }
            }
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else {
            let value = expand(e.value.as_deref().unwrap_or(""), &vars);
            set(&mut order, &mut vars, e.name.clone(), value);
            continue;
        };
        // A key of a ConfigMap or a Secret: (value, optional, where, key).
        let keyed = if from.field_ref.is_some() {
            None
        } else if let Some(r) = &from.config_map_key_ref {
            let v = lookup
                .config_map(&r.name)
                .await?
                .and_then(|cm| cm.data.as_ref()?.get(&r.key).cloned());
            Some((v, r.optional, format!("ConfigMap {ns}/{}", r.name), &r.key))
        } else if let Some(r) = &from.secret_key_ref {
            let v = lookup
                .secret(&r.name)
                .await?
                .and_then(|s| secret_value(s, &r.key));
            Some((v, r.optional, format!("Secret {ns}/{}", r.name), &r.key))
        } else {
            None
        };
        let value = match (keyed, &from.field_ref) {
            (Some((Some(v), ..)), _) => v,
            (Some((None, Some(true), ..)), _) => continue,
            (Some((None, _, place, key)), _) => {
                return Err(NodeError::Config(format!(
                    "couldn't find key {key} in {place}"
                )))
            }
            (None, Some(f)) => field_ref(pod, &f.field_path, pod_ip)?,
            (None, None) => String::new(),
        };
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    if !vars.contains_key("PATH") {
        set(
            &mut order,
            &mut vars,
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            format!("{k}={v}")
        })
        .collect())
}

/// The process arguments: command/args over the image's entrypoint/cmd, as upstream.
pub fn command_line(c: &Container, image: &ImageConfig, env: &[String]) -> Vec<String> {
    let vars: BTreeMap<String, String> = env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    if !command.is_empty() {
        command
            .iter()
            .chain(&args)
            .map(|s| expand(s, &vars))
            .collect()
    } else if !args.is_empty() {
        let mut v = image.entrypoint.clone();
        v.extend(args.iter().map(|s| expand(s, &vars)));
        v
    } else {
        let mut v = image.entrypoint.clone();
        v.extend(image.cmd.iter().cloned());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }

    #[test]
    fn command_and_args_combine_with_the_image() {
        let image = ImageConfig {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["default".into()],
            ..Default::default()
        };
        let mut c = Container::default();
        assert_eq!(command_line(&c, &image, &[]), vec!["/ep", "default"]);
        c.args = Some(vec!["$(X)".into()]);
        assert_eq!(command_line(&c, &image, &["X=1".into()]), vec!["/ep", "1"]);
        c.command = Some(vec!["sh".into()]);
        assert_eq!(command_line(&c, &image, &[]), vec!["sh", "$(X)"]);
    }
}
