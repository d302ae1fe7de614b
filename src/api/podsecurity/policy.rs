//! Levels, versions and the policy a namespace's `pod-security.kubernetes.io/*` labels set, as
//! upstream's pod-security-admission API: a label that does not parse falls back closed for
//! enforce (restricted, latest) and open for audit and warn.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::status::Cause;

pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted".into()),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// A policy version: `v1.N` (the checks as of Kubernetes 1.N) or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u32);

impl Version {
    pub const LATEST: Version = Version(u32::MAX);

    pub fn v1(minor: u32) -> Version {
        Version(minor)
    }

    /// Whether the checks of Kubernetes 1.`minor` apply at this version.
    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }

    pub fn parse(s: &str) -> Result<Version, String> {
        const RULE: &str = r#"must be "latest" or "v1.x""#;
        if s == "latest" {
            return Ok(Version::LATEST);
        }
        let minor = s.strip_prefix("v1.").ok_or(RULE)?;
        if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RULE.into());
        }
        minor.parse().map(Version).map_err(|_| RULE.into())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Version::LATEST {
            f.write_str("latest")
        } else {
            write!(f, "v1.{}", self.0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    /// The policy a namespace's labels set over the cluster's `defaults`, and the labels that
    /// do not parse (as 422 causes).
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: Policy,
    ) -> (Policy, Vec<Cause>) {
        let mut p = defaults;
        let mut errs = Vec::new();
        let mut bad = |key: &str, value: &str, rule: String| {
            errs.push(Cause::invalid(
                format!("metadata.labels[{key}]"),
                format!("{value:?}"),
                rule,
            ));
        };
        let mut enforce_set = false;
        if let Some(v) = labels.get(ENFORCE) {
            match Level::parse(v) {
                Ok(l) => (p.enforce.level, enforce_set) = (l, true),
                Err(e) => (p.enforce.level, _) = (Level::Restricted, bad(ENFORCE, v, e)),
            }
        }
        for (key, lv) in [(AUDIT, &mut p.audit), (WARN, &mut p.warn)] {
            if let Some(v) = labels.get(key) {
                match Level::parse(v) {
                    Ok(l) => lv.level = l,
                    // Audit and warn fail open.
                    Err(e) => (lv.level, _) = (Level::Privileged, bad(key, v, e)),
                }
            }
        }
        for (key, lv) in [
            (ENFORCE_VERSION, &mut p.enforce),
            (AUDIT_VERSION, &mut p.audit),
            (WARN_VERSION, &mut p.warn),
        ] {
            if let Some(v) = labels.get(key) {
                match Version::parse(v) {
                    Ok(ver) => lv.version = ver,
                    Err(e) => (lv.version, _) = (Version::LATEST, bad(key, v, e)),
                }
            }
        }
        // An explicit enforce level stricter than warn warns at that level too.
        if !labels.contains_key(WARN) && enforce_set && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !labels.contains_key(WARN_VERSION) {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASELINE: LevelVersion = LevelVersion {
        level: Level::Baseline,
        version: Version::LATEST,
    };
    const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::LATEST,
    };

    #[test]
    fn labels_override_defaults_and_bad_ones_fail_closed_for_enforce() {
        let defaults = Policy {
            enforce: BASELINE,
            audit: PRIVILEGED,
            warn: PRIVILEGED,
        };
        let (p, errs) = Policy::from_labels(
            &labels(&[(ENFORCE, "restricted"), (ENFORCE_VERSION, "v1.25")]),
            defaults,
        );
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "restricted:v1.25");
        assert_eq!(
            p.warn.to_string(),
            "restricted:v1.25",
            "warn follows enforce"
        );

        let (p, errs) = Policy::from_labels(
            &labels(&[(ENFORCE, "strict"), (WARN, "nope"), (AUDIT_VERSION, "1.2")]),
            defaults,
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(errs.len(), 3);
        assert_eq!(
            errs[0].message,
            r#"Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            errs[0].field,
            "metadata.labels[pod-security.kubernetes.io/enforce]"
        );
        assert_eq!(
            Version::parse("v1.x"),
            Err(r#"must be "latest" or "v1.x""#.into())
        );
    }
}
