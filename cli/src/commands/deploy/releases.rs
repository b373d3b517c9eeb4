//! Releases: every successful deploy is recorded in the artifacts bucket, so that going back is one
//! command (`notesctl history`, `notesctl rollback`). A release is a JSON record under
//! `{stage}/releases/` naming exactly what the stage runs — each stack's template (stored
//! content-addressed under `{stage}/templates/`, each once), the parameter values deploy passed, and
//! the code zip's key — with the time, the notesctl version and the git commit it was deployed from.
//! A deploy of some stacks carries the others over from the release before it, so every release
//! describes the whole stage.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aws::artifacts::{Artifacts, releases_prefix, template_key};
use crate::context::Context;

/// One deploy of a stage, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// `YYYYMMDD-HHMMSS-mmm` (UTC): sorts by time; `rollback --to` takes it (or a unique prefix).
    pub id: String,
    /// When the deploy finished (RFC 3339).
    pub time: String,
    /// The notesctl version that deployed it.
    pub notesctl: String,
    /// The commit of the repository deploy ran in, when it ran in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitCommit>,
    /// The code zip the functions run (`{stage}/notes-lambda/{sha256}.zip`), once a code stack was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_key: Option<String>,
    /// Per stack (event, data, …): its template and parameter values.
    pub stacks: BTreeMap<String, StackRelease>,
    /// Deployed with `--hotswap`: the functions run `code_key`; the stacks' own `CodeKey` lags behind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hotswap: bool,
    /// The release this one went back to, when `rollback` made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackRelease {
    /// The template, content-addressed: `{stage}/templates/{sha256}.yaml`.
    pub template: String,
    /// The parameter values deploy passed (the template's defaults fill the rest).
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCommit {
    pub commit: String,
    /// Tracked files differed from the commit.
    pub dirty: bool,
}

impl Release {
    /// The stacks' shared parameter `name`, as any stack recorded it.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.stacks
            .values()
            .find_map(|s| s.parameters.get(name).map(String::as_str))
    }
}

/// The stage's releases, newest first (at most `limit`).
pub async fn list(store: &Artifacts, stage: &str, limit: usize) -> anyhow::Result<Vec<Release>> {
    let mut keys = store.keys(&releases_prefix(stage)).await?;
    keys.retain(|k| k.ends_with(".json"));
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.truncate(limit);
    let reads = keys.iter().map(|key| async move {
        let bytes = store.get(key).await?;
        serde_json::from_slice::<Release>(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "s3://{}/{key} is not a release record ({e}); move it out of {} if it is not one",
                store.bucket,
                releases_prefix(stage)
            )
        })
    });
    futures::future::try_join_all(reads).await
}

/// What a successful deploy deployed.
pub struct Deployed<'a> {
    /// The folder of the templates it deployed.
    pub templates: &'a Path,
    /// The stacks it deployed (the others are carried over from the release before).
    pub stacks: &'a [&'a str],
    /// The parameter values it passed (each stack records those its template declares).
    pub values: &'a BTreeMap<&'static str, String>,
    /// The zip the functions run now, when a code stack was deployed.
    pub code_key: Option<&'a str>,
    pub hotswap: bool,
    pub rollback_of: Option<&'a str>,
}

/// Records `deployed` as the stage's newest release, in the artifacts bucket (created if missing).
pub async fn record(
    ctx: &Context,
    store: &Artifacts,
    region: Option<&str>,
    deployed: Deployed<'_>,
) -> anyhow::Result<Release> {
    let stage = ctx.stage();
    store.ensure(region).await?;
    let previous = list(store, stage, 1).await?.into_iter().next();
    let (mut stacks, mut code_key) = match previous {
        Some(p) => (p.stacks, p.code_key),
        None => (BTreeMap::new(), None),
    };
    if let Some(key) = deployed.code_key {
        code_key = Some(key.to_owned());
    }
    for short in deployed.stacks {
        let path = deployed.templates.join(format!("{short}.yaml"));
        let text = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("reading {} for the release: {e}", path.display()))?;
        let declared = crate::template::declared_parameters(&crate::template::parse(
            &String::from_utf8_lossy(&text),
        )?);
        let parameters = declared
            .iter()
            .filter_map(|(name, _)| {
                let value = deployed.values.get(name.as_str())?;
                Some((name.clone(), value.clone()))
            })
            .collect();
        let key = template_key(stage, &text);
        store.upload(&key, text).await?;
        stacks.insert(
            (*short).to_owned(),
            StackRelease {
                template: key,
                parameters,
            },
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let release = Release {
        id: release_id(now),
        time: now
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| anyhow::anyhow!("formatting the release time: {e}"))?,
        notesctl: env!("CARGO_PKG_VERSION").to_owned(),
        git: git_commit().await,
        code_key,
        stacks,
        hotswap: deployed.hotswap,
        rollback_of: deployed.rollback_of.map(str::to_owned),
    };
    let key = format!("{}{}.json", releases_prefix(stage), release.id);
    let json = serde_json::to_vec_pretty(&release).expect("a release is plain JSON");
    store.upload(&key, json).await?;
    Ok(release)
}

/// Records a deploy as the stage's newest release. The stacks are deployed
/// whatever happens here, so a release that cannot be recorded is reported beside them, not as a
/// failed deploy.
pub(super) async fn record_deploy(
    ctx: &Context,
    config: &aws_config::SdkConfig,
    args: &super::DeployArgs,
    order: &[&str],
    values: &BTreeMap<&'static str, String>,
    code: Option<(&str, &Artifacts)>,
    report: &mut super::DeployReport,
) {
    let store = match code {
        Some((_, store)) => Ok(store.clone()),
        None => {
            let s3 = crate::aws::s3::s3_client(config, ctx.custom_endpoint());
            Artifacts::locate(config, s3, args.inputs.artifacts_bucket.as_deref()).await
        }
    };
    let region = config.region().map(|r| r.to_string());
    let deployed = Deployed {
        templates: &args.inputs.templates,
        stacks: order,
        values,
        code_key: code.map(|(key, _)| key),
        hotswap: report.hotswap.is_some(),
        rollback_of: args.rollback_of.as_deref(),
    };
    let recorded = match store {
        Ok(store) => record(ctx, &store, region.as_deref(), deployed).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(release) => {
            ctx.say(format!(
                "recorded release {} (`notesctl history` lists it; `notesctl rollback` returns to the one before)",
                release.id
            ));
            report.release = Some(release);
        }
        Err(e) => {
            let text = format!(
                "the stacks are deployed, but the release was not recorded: {e:#}. `notesctl history` will not list this deploy and `rollback` cannot return to it; deploy again to record it"
            );
            ctx.say(format!("warning: {text}"));
            report.release_problem = Some(text);
        }
    }
}

/// `YYYYMMDD-HHMMSS-mmm` in UTC: names sort by time.
fn release_id(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The commit of the repository the current folder is in, if it is in one (and git is installed).
async fn git_commit() -> Option<GitCommit> {
    let git = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new("git")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]).await?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"]).await;
    Some(GitCommit {
        commit,
        dirty: changes.is_some_and(|c| !c.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_sort_by_time() {
        let a = time::macros::datetime!(2026-12-02 09:05:07.004 UTC);
        let b = time::macros::datetime!(2026-12-02 10:00:00.000 UTC);
        assert_eq!(release_id(a), "20261202-090507-004");
        assert!(release_id(a) < release_id(b));
    }
}
