//! The releases every successful deploy records ([`deploy::releases`]): `notesctl history` lists them, newest (live) first. `notesctl rollback [--to ID]` fetches a
//! release's templates and zip and deploys them through `deploy` itself — a hotswap when only the code
//! differs, change sets otherwise — and that deploy is recorded as a new release.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::deploy::releases::{Release, list};
use super::deploy::{self, DeployArgs, DeployReport, Inputs};
use crate::aws::artifacts::Artifacts;
use crate::aws::s3::s3_client;
use crate::context::{Context, parse_duration};
use crate::lambda::Arch;
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Show at most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Bucket for the code zips and releases (default: notesctl-artifacts-{account}-{region}).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryReport {
    pub stage: String,
    pub bucket: String,
    /// Newest first: the first is live.
    pub releases: Vec<Release>,
}

impl Report for HistoryReport {
    fn exit(&self) -> Exit {
        Exit::Ok
    }
}

/// The zip's digest, short, from its content-addressed key.
fn short_code(key: &Option<String>) -> String {
    key.as_deref()
        .and_then(|k| k.rsplit_once("notes-lambda/"))
        .map(|(_, file)| file.trim_end_matches(".zip").chars().take(12).collect())
        .unwrap_or_else(|| "-".to_owned())
}

impl fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.releases.is_empty() {
            return writeln!(
                f,
                "no releases of {} in s3://{} yet: each successful `notesctl deploy` records one",
                self.stage, self.bucket
            );
        }
        writeln!(
            f,
            "{:<20} {:<20} {:<12} {:<12} NOTES",
            "RELEASE", "TIME", "CODE", "COMMIT"
        )?;
        for (i, r) in self.releases.iter().enumerate() {
            let commit = r.git.as_ref().map_or("-".to_owned(), |g| {
                let short: String = g.commit.chars().take(10).collect();
                if g.dirty { format!("{short}+") } else { short }
            });
            let mut notes = Vec::new();
            if i == 0 {
                notes.push("live".to_owned());
            }
            if r.hotswap {
                notes.push("hotswap".to_owned());
            }
            if let Some(of) = &r.rollback_of {
                notes.push(format!("rollback to {of}"));
            }
            writeln!(
                f,
                "{:<20} {:<20} {:<12} {:<12} {}",
                r.id,
                r.time.get(..19).unwrap_or(&r.time),
                short_code(&r.code_key),
                commit,
                notes.join(", ")
            )?;
        }
        Ok(())
    }
}

async fn locate(ctx: &Context, bucket: Option<&str>) -> anyhow::Result<Artifacts> {
    let config = ctx.aws().await?;
    let s3 = s3_client(&config, ctx.custom_endpoint());
    Artifacts::locate(&config, s3, bucket).await
}

pub async fn history(ctx: &Context, args: HistoryArgs) -> anyhow::Result<HistoryReport> {
    let store = locate(ctx, args.artifacts_bucket.as_deref()).await?;
    let releases = if store.exists().await? {
        list(&store, ctx.stage(), args.limit).await?
    } else {
        Vec::new()
    };
    Ok(HistoryReport {
        stage: ctx.stage().to_owned(),
        bucket: store.bucket,
        releases,
    })
}

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The release to go back to (its id from `notesctl history`, or a unique prefix of it);
    /// default: the one before the live release.
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<String>,
    /// Apply without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Let a code-only rollback of the production stage hotswap (otherwise production goes back
    /// through CloudFormation).
    #[arg(long)]
    pub force: bool,
    /// How long to wait for CloudFormation in all.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bucket for the code zips and releases (default: notesctl-artifacts-{account}-{region}).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    /// The release that was live.
    pub from: String,
    /// The release deployed again.
    pub to: String,
    pub deploy: DeployReport,
}

impl Report for RollbackReport {
    fn exit(&self) -> Exit {
        self.deploy.exit()
    }
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rollback from {} to {}", self.from, self.to)?;
        write!(f, "{}", self.deploy)
    }
}

/// The release `to` names (an id or a unique prefix), or the one before the live one.
fn choose<'a>(releases: &'a [Release], to: Option<&str>) -> anyhow::Result<&'a Release> {
    let Some(to) = to else {
        return releases.get(1).ok_or_else(|| {
            anyhow::anyhow!(
                "there is no release before the live one to roll back to ({} recorded): `notesctl history` lists them",
                releases.len()
            )
        });
    };
    let matching: Vec<&Release> = releases.iter().filter(|r| r.id.starts_with(to)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => anyhow::bail!(
            "no release {to:?} among the {} newest: `notesctl history --limit N` lists them",
            releases.len()
        ),
        many => anyhow::bail!(
            "{to:?} names {} releases ({}): give more of the id",
            many.len(),
            many.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How far back `rollback` looks for the release it is given.
const ROLLBACK_WINDOW: usize = 1000;

pub async fn rollback(ctx: &Context, args: RollbackArgs) -> anyhow::Result<RollbackReport> {
    let store = locate(ctx, args.artifacts_bucket.as_deref()).await?;
    if !store.exists().await? {
        anyhow::bail!(
            "no releases of {}: the artifacts bucket {} does not exist. Deploy first (`notesctl deploy`)",
            ctx.stage(),
            store.bucket
        );
    }
    let releases = list(&store, ctx.stage(), ROLLBACK_WINDOW).await?;
    let live = releases.first().ok_or_else(|| {
        anyhow::anyhow!(
            "no releases of {} in s3://{}: nothing to roll back to",
            ctx.stage(),
            store.bucket
        )
    })?;
    let target = choose(&releases, args.to.as_deref())?;
    if target.id == live.id {
        anyhow::bail!(
            "{} is the live release already: `notesctl history` lists the ones before it",
            target.id
        );
    }
    // The release's templates and zip, where deploy reads them.
    let dir = tempfile::tempdir()
        .map_err(|e| anyhow::anyhow!("creating a folder for the release's files: {e}"))?;
    for (short, stack) in &target.stacks {
        let text = store.get(&stack.template).await?;
        std::fs::write(dir.path().join(format!("{short}.yaml")), text)
            .map_err(|e| anyhow::anyhow!("writing {short}.yaml of the release: {e}"))?;
    }
    let arch: Arch = match target.parameter("Architecture") {
        Some(a) => <Arch as clap::ValueEnum>::from_str(a, true)
            .map_err(|e| anyhow::anyhow!("release {}: Architecture {a:?}: {e}", target.id))?,
        None => Arch::Arm64,
    };
    if let Some(key) = &target.code_key {
        let zip = store.get(key).await?;
        std::fs::write(crate::lambda::zip_path(dir.path(), arch), zip)
            .map_err(|e| anyhow::anyhow!("writing the release's zip: {e}"))?;
    }
    ctx.say(format!(
        "rolling {} back from {} to {} ({} stacks, code {})",
        ctx.stage(),
        live.id,
        target.id,
        target.stacks.len(),
        short_code(&target.code_key)
    ));
    let deploy_args = DeployArgs {
        inputs: Inputs {
            artifacts: dir.path().to_path_buf(),
            arch,
            stacks: target.stacks.keys().cloned().collect(),
            templates: dir.path().to_path_buf(),
            allowed_origin: target.parameter("AllowedOrigin").unwrap_or("*").to_owned(),
            save_timeout: match target.parameter("SaveFunctionTimeout") {
                Some(t) => t.parse().map_err(|e| {
                    anyhow::anyhow!("release {}: SaveFunctionTimeout {t:?}: {e}", target.id)
                })?,
                None => 30,
            },
            // Releases before the feed had shards passed none: the template's default.
            public_feed_shards: match target.parameter("PublicFeedShards") {
                Some(n) => n.parse().map_err(|e| {
                    anyhow::anyhow!("release {}: PublicFeedShards {n:?}: {e}", target.id)
                })?,
                None => 8,
            },
            artifacts_bucket: Some(store.bucket.clone()),
        },
        preview: false,
        yes: args.yes,
        frontend: None,
        // Only code differs → a hotswap; anything else goes through change sets. Production
        // hotswaps only when asked to.
        hotswap: ctx.stage() != "production" || args.force,
        force: args.force,
        watch: false,
        watch_dir: std::path::PathBuf::from("handlers"),
        // These templates passed validation when they were deployed; the checks may have grown since.
        no_validate: true,
        timeout: args.timeout,
        rollback_of: Some(target.id.clone()),
    };
    let deploy = deploy::run(ctx, deploy_args).await?;
    Ok(RollbackReport {
        from: live.id.clone(),
        to: target.id.clone(),
        deploy,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn release(id: &str) -> Release {
        Release {
            id: id.to_owned(),
            time: String::new(),
            notesctl: String::new(),
            git: None,
            code_key: None,
            stacks: BTreeMap::new(),
            hotswap: false,
            rollback_of: None,
        }
    }

    #[test]
    fn rollback_goes_to_the_release_before_the_live_one_or_the_one_named() {
        let releases = [
            release("20261202-020000-000"),
            release("20261202-010000-000"),
            release("20261201-230000-000"),
        ];
        assert_eq!(choose(&releases, None).unwrap().id, "20261202-010000-000");
        assert_eq!(
            choose(&releases, Some("20261201")).unwrap().id,
            "20261201-230000-000"
        );
        let ambiguous = choose(&releases, Some("20261202")).unwrap_err().to_string();
        assert!(ambiguous.contains("names 2 releases"), "{ambiguous}");
        let unknown = choose(&releases, Some("1999")).unwrap_err().to_string();
        assert!(unknown.contains("history"), "{unknown}");
        let alone = choose(&releases[..1], None).unwrap_err().to_string();
        assert!(alone.contains("no release before the live one"), "{alone}");
    }
}
