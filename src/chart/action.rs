//! install, upgrade, uninstall and list, as `helm` does them: render first (so a template
//! error changes nothing in the cluster), record the release, apply in install order, and
//! on upgrade delete what the new revision no longer renders.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use kube::Client;
use serde_json::Value;
use tracing::warn;

use super::apply::{Applier, ObjectRef};
use super::manifest::{self, install_rank, Manifest};
use super::release::{self, Release};
use super::render::{render, RenderOptions, Rendered};
use super::{validate_release_name, values, Chart, ChartError};

pub struct InstallOptions {
    pub release: String,
    pub namespace: String,
    pub chart_dir: PathBuf,
    pub value_files: Vec<PathBuf>,
    pub sets: Vec<String>,
}

/// A chart rendered for a release, with the values that went in.
struct Prepared {
    chart: Chart,
    user: Value,
    computed: Value,
    rendered: Rendered,
}

fn prepare(opts: &InstallOptions, revision: u64, is_upgrade: bool) -> Result<Prepared, ChartError> {
    validate_release_name(&opts.release)?;
    let chart = Chart::load(&opts.chart_dir)?;
    let user = values::user_values(&opts.value_files, &opts.sets)?;
    let computed = values::coalesce(&chart.values, &user);
    let rendered = render(
        &chart,
        &computed,
        &RenderOptions {
            release_name: opts.release.clone(),
            namespace: opts.namespace.clone(),
            revision,
            is_upgrade,
        },
    )?;
    Ok(Prepared {
        chart,
        user,
        computed,
        rendered,
    })
}

fn new_release(opts: &InstallOptions, p: &Prepared, revision: u64, status: &str) -> Release {
    Release {
        name: opts.release.clone(),
        namespace: opts.namespace.clone(),
        revision,
        status: status.into(),
        chart: p.chart.meta.name.clone(),
        chart_version: p.chart.meta.version.clone(),
        app_version: p.chart.meta.app_version.clone(),
        updated: crate::api_time_now(),
        values: p.user.clone(),
        computed_values: p.computed.clone(),
        objects: Vec::new(),
        manifest: manifest::manifest_text(&p.rendered.manifests),
    }
}

/// The result of an install or upgrade: the release as recorded, and the rendered NOTES.
pub struct Outcome {
    pub release: Release,
    pub notes: String,
}

pub async fn install(client: &Client, opts: &InstallOptions) -> Result<Outcome, ChartError> {
    let p = prepare(opts, 1, false)?;
    if release::get(client, &opts.namespace, &opts.release)
        .await?
        .is_some()
    {
        return Err(ChartError::ReleaseInUse(opts.release.clone()));
    }
    let mut rel = new_release(opts, &p, 1, "pending-install");
    let rv = release::create(client, &rel).await?;
    let mut applier = Applier::new(client.clone());
    let mut applied = Vec::new();
    let result = apply_all(
        &mut applier,
        &p.rendered.manifests,
        &HashMap::new(),
        &rel,
        &mut applied,
    )
    .await;
    rel.objects = applied;
    finish(client, rel, rv, result, p.rendered.notes).await
}

/// Records the outcome of an install or upgrade; the apply error, if any, is the one to
/// report (the record then says `failed`).
async fn finish(
    client: &Client,
    mut rel: Release,
    rv: Option<String>,
    result: Result<(), ChartError>,
    notes: String,
) -> Result<Outcome, ChartError> {
    rel.status = if result.is_ok() { "deployed" } else { "failed" }.into();
    rel.updated = crate::api_time_now();
    let saved = release::save(client, &rel, rv).await;
    result?;
    saved?;
    Ok(Outcome {
        release: rel,
        notes,
    })
}

pub async fn upgrade(
    client: &Client,
    opts: &InstallOptions,
    install_missing: bool,
) -> Result<Outcome, ChartError> {
    let Some((old, rv)) = release::get(client, &opts.namespace, &opts.release).await? else {
        if install_missing {
            return install(client, opts).await;
        }
        return Err(ChartError::ReleaseNotFound(opts.release.clone()));
    };
    let revision = old.revision + 1;
    let p = prepare(opts, revision, true)?;
    let mut applier = Applier::new(client.clone());
    let previous = previous_objects(&mut applier, &old).await;
    let mut rel = new_release(opts, &p, revision, "pending-upgrade");
    // The old objects stay listed until the upgrade is through, so a failed upgrade
    // leaves a record from which uninstall still finds everything.
    rel.objects = old.objects.clone();
    let rv = release::save(client, &rel, rv).await?;
    let mut applied = Vec::new();
    let mut result = apply_all(
        &mut applier,
        &p.rendered.manifests,
        &previous,
        &rel,
        &mut applied,
    )
    .await;
    if result.is_ok() {
        let keep: HashSet<&ObjectRef> = applied.iter().collect();
        let stale: Vec<ObjectRef> = old
            .objects
            .iter()
            .filter(|o| !keep.contains(o))
            .cloned()
            .collect();
        result = delete_all(&mut applier, &stale).await;
        rel.objects = applied;
    } else {
        for o in applied {
            if !rel.objects.contains(&o) {
                rel.objects.push(o);
            }
        }
    }
    finish(client, rel, rv, result, p.rendered.notes).await
}

/// Deletes every object of the release, then its record.
pub async fn uninstall(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Release, ChartError> {
    let Some((rel, _)) = release::get(client, namespace, name).await? else {
        return Err(ChartError::ReleaseNotFound(name.to_string()));
    };
    let mut applier = Applier::new(client.clone());
    delete_all(&mut applier, &rel.objects).await?;
    release::delete(client, namespace, name).await?;
    Ok(rel)
}

pub async fn list(client: &Client, namespace: Option<&str>) -> Result<Vec<Release>, ChartError> {
    release::list(client, namespace).await
}

async fn apply_all(
    applier: &mut Applier,
    manifests: &[Manifest],
    previous: &HashMap<ObjectRef, Value>,
    rel: &Release,
    applied: &mut Vec<ObjectRef>,
) -> Result<(), ChartError> {
    for m in manifests {
        let target = applier.locate(m, &rel.namespace).await?;
        let done = applier
            .apply(m, previous.get(&target), &rel.name, &rel.namespace)
            .await?;
        applied.push(done);
    }
    Ok(())
}

/// In reverse install order (Deployments before the Services and ConfigMaps they use).
async fn delete_all(applier: &mut Applier, objects: &[ObjectRef]) -> Result<(), ChartError> {
    let mut objects = objects.to_vec();
    objects.reverse();
    objects.sort_by_key(|o| std::cmp::Reverse(install_rank(&o.kind)));
    for o in &objects {
        applier.delete(o).await?;
    }
    Ok(())
}

/// The previous revision's manifest of each object, for the merge patch's deletions.
async fn previous_objects(applier: &mut Applier, old: &Release) -> HashMap<ObjectRef, Value> {
    let mut out = HashMap::new();
    let manifests = match manifest::split("previous release", &old.manifest) {
        Ok(m) => m,
        Err(e) => {
            warn!(
                "release {}: stored manifest unreadable ({e}); upgrading without it",
                old.name
            );
            return out;
        }
    };
    for m in manifests {
        match applier.locate(&m, &old.namespace).await {
            Ok(r) => {
                out.insert(r, m.object);
            }
            Err(e) => warn!("release {}: {e}", old.name),
        }
    }
    out
}
