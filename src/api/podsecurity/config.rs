//! The PodSecurity plugin's configuration, read as kube-apiserver reads
//! `--admission-control-config-file`: an `apiserver.config.k8s.io/v1` AdmissionConfiguration
//! whose `PodSecurity` plugin holds (or names, by `path`) a
//! `pod-security.admission.config.k8s.io/v1` PodSecurityConfiguration. Skiff's one difference:
//! unset `defaults` levels are `baseline` (upstream: `privileged`), so a cluster is safe
//! before anyone configures it and a workload that would not run is warned about.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::policy::{Level, LevelVersion, Policy, Version};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Decode(PathBuf, String),
    #[error("{0}: {1}")]
    Invalid(PathBuf, String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdmissionConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    plugins: Vec<Plugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plugin {
    name: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    configuration: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodSecurityConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    exemptions: Exemptions,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    enforce: Option<String>,
    #[serde(rename = "enforce-version")]
    enforce_version: Option<String>,
    audit: Option<String>,
    #[serde(rename = "audit-version")]
    audit_version: Option<String>,
    warn: Option<String>,
    #[serde(rename = "warn-version")]
    warn_version: Option<String>,
}

/// Who is never checked.
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemptions {
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub runtime_classes: Vec<String>,
}

/// The cluster-wide defaults and exemptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSecurityConfig {
    pub defaults: Policy,
    pub exemptions: Exemptions,
}

impl Default for PodSecurityConfig {
    fn default() -> Self {
        let lv = |level| LevelVersion {
            level,
            version: Version::LATEST,
        };
        PodSecurityConfig {
            defaults: Policy {
                enforce: lv(Level::Baseline),
                audit: lv(Level::Baseline),
                warn: lv(Level::Baseline),
            },
            exemptions: Exemptions::default(),
        }
    }
}

const PSA_VERSIONS: &[&str] = &[
    "pod-security.admission.config.k8s.io/v1",
    "pod-security.admission.config.k8s.io/v1beta1",
];

impl PodSecurityConfig {
    /// The configuration in the AdmissionConfiguration file `path`; an empty path: defaults.
    pub fn load(path: &str) -> Result<PodSecurityConfig, ConfigError> {
        if path.is_empty() {
            return Ok(PodSecurityConfig::default());
        }
        let path = Path::new(path);
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        Self::parse(path, &text)
    }

    pub(crate) fn parse(path: &Path, text: &str) -> Result<PodSecurityConfig, ConfigError> {
        let decode = |e: yaml_serde::Error| ConfigError::Decode(path.to_path_buf(), e.to_string());
        let invalid = |m: String| ConfigError::Invalid(path.to_path_buf(), m);
        let value: serde_json::Value = yaml_serde::from_str(text).map_err(decode)?;
        // A PodSecurityConfiguration on its own (what a plugin's `path` names) is accepted too.
        let psa: serde_json::Value =
            if value.get("kind").and_then(|k| k.as_str()) == Some("PodSecurityConfiguration") {
                value
            } else {
                let ac: AdmissionConfiguration = serde_json::from_value(value)
                    .map_err(|e| ConfigError::Decode(path.to_path_buf(), e.to_string()))?;
                if ac.kind != "AdmissionConfiguration"
                    || !ac.api_version.starts_with("apiserver.config.k8s.io/")
                {
                    return Err(invalid(format!(
                        "expected an apiserver.config.k8s.io AdmissionConfiguration, got {} {}",
                        ac.api_version, ac.kind
                    )));
                }
                let Some(plugin) = ac.plugins.into_iter().find(|p| p.name == "PodSecurity") else {
                    return Ok(PodSecurityConfig::default());
                };
                match (plugin.configuration, plugin.path) {
                    (Some(c), _) => c,
                    (None, Some(p)) => {
                        // Relative to the file that names it, as upstream.
                        let p = path.parent().unwrap_or(Path::new(".")).join(p);
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| ConfigError::Read(p.clone(), e))?;
                        return Self::parse(&p, &text);
                    }
                    (None, None) => return Ok(PodSecurityConfig::default()),
                }
            };
        let c: PodSecurityConfiguration = serde_json::from_value(psa)
            .map_err(|e| ConfigError::Decode(path.to_path_buf(), e.to_string()))?;
        if c.kind != "PodSecurityConfiguration" || !PSA_VERSIONS.contains(&c.api_version.as_str()) {
            return Err(invalid(format!(
                "expected pod-security.admission.config.k8s.io/v1 PodSecurityConfiguration, got {} {}",
                c.api_version, c.kind
            )));
        }
        let mut out = PodSecurityConfig::default();
        let d = c.defaults;
        let p = &mut out.defaults;
        for (field, value, lv) in [
            ("defaults.enforce", d.enforce, &mut p.enforce),
            ("defaults.audit", d.audit, &mut p.audit),
            ("defaults.warn", d.warn, &mut p.warn),
        ] {
            if let Some(v) = value {
                lv.level = Level::parse(&v).map_err(|e| invalid(format!("{field}: {e}")))?;
            }
        }
        for (field, value, lv) in [
            (
                "defaults.enforce-version",
                d.enforce_version,
                &mut p.enforce,
            ),
            ("defaults.audit-version", d.audit_version, &mut p.audit),
            ("defaults.warn-version", d.warn_version, &mut p.warn),
        ] {
            if let Some(v) = value {
                lv.version = Version::parse(&v).map_err(|e| invalid(format!("{field}: {e}")))?;
            }
        }
        out.exemptions = c.exemptions;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PodSecurityConfig, ConfigError> {
        PodSecurityConfig::parse(Path::new("admission.yaml"), text)
    }

    #[test]
    fn reads_upstreams_admission_configuration() {
        let c = parse(
            r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: restricted
      enforce-version: v1.30
      warn: restricted
    exemptions:
      usernames: [ci-bot]
      namespaces: [kube-system]
"#,
        )
        .expect("config");
        assert_eq!(c.defaults.enforce.to_string(), "restricted:v1.30");
        assert_eq!(c.defaults.warn.to_string(), "restricted:latest");
        assert_eq!(c.defaults.audit.to_string(), "baseline:latest");
        assert_eq!(c.exemptions.usernames, ["ci-bot"]);
        assert_eq!(c.exemptions.namespaces, ["kube-system"]);
        let none = parse("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n")
            .expect("no plugins");
        assert_eq!(none, PodSecurityConfig::default());
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let bad_level = "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\ndefaults: {enforce: strict}\n";
        let e = parse(bad_level).expect_err("bad level").to_string();
        assert_eq!(
            e,
            "admission.yaml: defaults.enforce: must be one of privileged, baseline, restricted"
        );
        let unknown = "apiVersion: pod-security.admission.config.k8s.io/v1\nkind: PodSecurityConfiguration\nexemptions: {users: [a]}\n";
        assert!(parse(unknown)
            .expect_err("unknown field")
            .to_string()
            .contains("users"));
        assert!(parse("[1, 2").is_err());
        assert!(parse("apiVersion: v1\nkind: ConfigMap\n").is_err());
    }
}
