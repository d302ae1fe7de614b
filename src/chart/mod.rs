//! Helm-format charts: load a chart directory (Chart.yaml, values.yaml, templates/), render
//! its templates with Go text/template (the `gtmpl-ng` engine plus Helm's functions), and
//! install, upgrade or uninstall the result as a release recorded in the cluster.
//!
//! Semantics follow Helm 3 where this module is silent: values precedence, `--set` syntax,
//! install order by kind, `_*.tpl` partials, NOTES.txt, release names.

mod action;
mod apply;
mod funcs;
mod manifest;
mod release;
mod render;
pub mod values;

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

pub use action::{install, list, uninstall, upgrade, InstallOptions, Outcome};
pub use apply::ObjectRef;
pub use manifest::{manifest_text, Manifest};
pub use release::{Release, RELEASE_OWNER};
pub use render::{render, RenderOptions, Rendered};

#[derive(Debug, Error)]
pub enum ChartError {
    #[error("{0}: Chart.yaml is missing (not a chart directory)")]
    NoChart(PathBuf),
    #[error("{path}: {msg}")]
    BadChart { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("values file {path}: {msg}")]
    ValuesFile { path: PathBuf, msg: String },
    #[error("--set {arg:?}: {msg}")]
    Set { arg: String, msg: String },
    #[error("parse error: {0}")]
    Parse(String),
    #[error("render error: {0}")]
    Render(String),
    #[error("{file}: {msg}")]
    Manifest { file: String, msg: String },
    #[error("invalid release name {0:?}: lowercase letters, digits, '-' and '.', at most 53")]
    ReleaseName(String),
    #[error("release {0:?} not found")]
    ReleaseNotFound(String),
    #[error("cannot re-use a name that is still in use: release {0:?}")]
    ReleaseInUse(String),
    #[error("release record {name}: {msg}")]
    ReleaseRecord { name: String, msg: String },
    #[error("API client: {0}")]
    Client(String),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{0}")]
    Ownership(String),
}

impl ChartError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ChartError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        ChartError::Kube {
            what: what.into(),
            source,
        }
    }
}

/// Chart.yaml, the fields Skiff reads.
#[derive(Debug, Clone)]
pub struct ChartMeta {
    pub api_version: String,
    pub name: String,
    pub version: String,
    pub app_version: String,
    pub description: String,
    pub chart_type: String,
}

/// A chart directory read into memory.
#[derive(Debug, Clone)]
pub struct Chart {
    pub dir: PathBuf,
    pub meta: ChartMeta,
    /// values.yaml (an empty map when the chart has none).
    pub values: Value,
    /// `(path under the chart, text)` of every file under templates/, sorted by path.
    pub templates: Vec<(String, String)>,
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Chart, ChartError> {
        let chart_yaml = dir.join("Chart.yaml");
        if !chart_yaml.is_file() {
            return Err(ChartError::NoChart(dir.to_path_buf()));
        }
        let text =
            std::fs::read_to_string(&chart_yaml).map_err(|e| ChartError::io(&chart_yaml, e))?;
        let meta = parse_meta(&text).map_err(|msg| ChartError::BadChart {
            path: chart_yaml.clone(),
            msg,
        })?;
        // Subcharts would need their own values scoping and render pass; refuse them rather
        // than silently render only the parent.
        let sub = dir.join("charts");
        if sub.is_dir()
            && std::fs::read_dir(&sub)
                .map_err(|e| ChartError::io(&sub, e))?
                .next()
                .is_some()
        {
            return Err(ChartError::BadChart {
                path: sub,
                msg: "subcharts are not supported".into(),
            });
        }
        let values_path = dir.join("values.yaml");
        let values = if values_path.is_file() {
            values::load_file(&values_path)?
        } else {
            Value::Object(Default::default())
        };
        let mut templates = Vec::new();
        let tdir = dir.join("templates");
        if tdir.is_dir() {
            read_tree(&tdir, "templates", &mut templates)?;
        }
        templates.sort();
        Ok(Chart {
            dir: dir.to_path_buf(),
            meta,
            values,
            templates,
        })
    }
}

fn read_tree(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) -> Result<(), ChartError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ChartError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ChartError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{rel}/{name}");
        if path.is_dir() {
            read_tree(&path, &rel, out)?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| ChartError::io(&path, e))?;
            let text = String::from_utf8(bytes).map_err(|_| ChartError::BadChart {
                path: path.clone(),
                msg: "not UTF-8 text".into(),
            })?;
            out.push((rel, text));
        }
    }
    Ok(())
}

fn parse_meta(text: &str) -> Result<ChartMeta, String> {
    let doc: Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(map) = doc else {
        return Err("not a YAML mapping".into());
    };
    // YAML may read `appVersion: 1.16` as a number; Helm keeps such fields as text.
    let field = |k: &str| -> String {
        match map.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    };
    let meta = ChartMeta {
        api_version: field("apiVersion"),
        name: field("name"),
        version: field("version"),
        app_version: field("appVersion"),
        description: field("description"),
        chart_type: field("type"),
    };
    match meta.api_version.as_str() {
        "v1" | "v2" => {}
        "" => return Err("apiVersion is required".into()),
        other => return Err(format!("apiVersion {other:?} is not supported (v1 or v2)")),
    }
    if meta.name.is_empty() {
        return Err("name is required".into());
    }
    if !is_semver(&meta.version) {
        return Err(format!(
            "version {:?} is not a SemVer version",
            meta.version
        ));
    }
    if meta.chart_type == "library" {
        return Err("library charts cannot be rendered or installed".into());
    }
    if map
        .get("dependencies")
        .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err("chart dependencies (subcharts) are not supported".into());
    }
    Ok(meta)
}

/// What Helm's semver parser takes: `[v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`.
fn is_semver(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Helm's release name rule: a DNS-1123 subdomain of at most 53 characters (the rest of 63
/// is left for suffixes charts append).
pub fn validate_release_name(name: &str) -> Result<(), ChartError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 53 || !name.split('.').all(label_ok) {
        return Err(ChartError::ReleaseName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_yaml_fields() {
        let m =
            parse_meta("apiVersion: v2\nname: echo\nversion: 0.1.0\nappVersion: 1.16\n").unwrap();
        assert_eq!((m.name.as_str(), m.app_version.as_str()), ("echo", "1.16"));
        assert!(parse_meta("apiVersion: v2\nversion: 0.1.0\n").is_err());
        assert!(parse_meta("apiVersion: v2\nname: x\nversion: one\n").is_err());
        assert!(parse_meta("apiVersion: v2\nname: x\nversion: 1.2.3.4\n").is_err());
        assert!(parse_meta("apiVersion: v2\nname: x\nversion: v1.2-rc.1+b5\n").is_ok());
        assert!(parse_meta("apiVersion: v3\nname: x\nversion: 1.0.0\n").is_err());
    }

    #[test]
    fn release_names() {
        assert!(validate_release_name("echo-1").is_ok());
        assert!(validate_release_name("a.b").is_ok());
        for bad in ["", "Echo", "-a", "a_b", &"x".repeat(54)] {
            assert!(validate_release_name(bad).is_err(), "{bad}");
        }
    }
}
