//! What a running lab consists of, kept in `DIR/lab.json` so `down`, `status` and `env` find
//! it from any shell.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LabError, Plan};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub plan: Plan,
    /// The kubeconfig the `skiff-lab` context was merged into.
    pub kubeconfig: PathBuf,
    /// Whether `up` created that file (then `down` removes it when nothing else is left in it).
    pub kubeconfig_created: bool,
    /// Processes started by `up`: (role, pid).
    pub processes: Vec<(String, u32)>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

/// The standalone kubeconfig of the lab (only the `skiff-lab` context), for `lab env`.
pub fn own_kubeconfig(dir: &Path) -> PathBuf {
    dir.join("kubeconfig")
}

pub fn load(dir: &Path) -> Result<Option<LabState>, LabError> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| LabError::State {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
}

/// Written to a temporary file and renamed, so a reader never sees half of it.
pub fn save(dir: &Path, state: &LabState) -> Result<(), LabError> {
    let p = path(dir);
    let tmp = dir.join("lab.json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| LabError::State {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}
