//! `notesctl sync-frontend DIR`: uploads the frontend to its bucket, deciding by content, not by
//! timestamps. The AWS CLI compares size and modification time, so a rebuilt site re-uploads every
//! file while a same-size edit with an older timestamp is skipped; here an unchanged file is never
//! sent and a changed one always is. Single-part objects compare MD5 with the ETag; multipart ones
//! the MD5 we store in their metadata. `config.json` is written from the stacks' outputs, so the
//! frontend needs no hand edit.
//!
//! The steps: find the files ([`local`]); at once hash them, list the bucket and read the URLs for
//! `config.json`; complete the listing where it cannot decide ([`remote`]); [`plan`]; upload
//! ([`upload`]); delete.

pub mod local;
pub mod plan;
pub mod remote;
pub mod upload;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_cloudformation::Client as Cfn;
use serde::{Deserialize, Serialize};

use crate::aws::s3::{CallCounts, Calls, delete_keys, list_bucket_near, s3_client};
use crate::aws::stacks;
use crate::context::Context;
use crate::output::Report;
use local::{LocalFile, Skipped, generated, globs, hash_files, walk};
use plan::{Why, plan};

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// The built frontend (the folder with index.html).
    pub dir: PathBuf,
    /// Bucket to sync to (default: the frontend stack's BucketName output).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Delete objects that are not in DIR (never more than half the bucket without --force).
    #[arg(long)]
    pub delete: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow an empty DIR, case-colliding names, and deleting more than half the bucket.
    #[arg(long)]
    pub force: bool,
    /// Requests in flight at once (S3's latency, not bandwidth, bounds small files).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Do not write config.json.
    #[arg(long)]
    pub no_config: bool,
    /// Skip files matching this glob (repeatable); excluded keys are not deleted either.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also publish dotfiles (`.env`, `.npmrc`, …), which are skipped by default (`.well-known/` is
    /// always published). Symbolic links to outside DIR are never followed.
    #[arg(long)]
    pub include_dotfiles: bool,
    /// API URL for config.json (default: the auth stack's ApiUrl output).
    #[arg(long)]
    pub api_url: Option<String>,
    /// WebSocket URL for config.json (default: the websocket stack's WebSocketUrl output).
    #[arg(long)]
    pub ws_url: Option<String>,
}

impl SyncArgs {
    /// What `deploy --frontend DIR` syncs: DIR, deleting what it no longer has.
    pub fn for_deploy(dir: PathBuf) -> SyncArgs {
        SyncArgs {
            dir,
            bucket: None,
            delete: true,
            dry_run: false,
            force: false,
            concurrency: 16,
            no_config: false,
            exclude: Vec::new(),
            include_dotfiles: false,
            api_url: None,
            ws_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub uploaded: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub bytes: u64,
    pub bucket: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedChange>,
    /// Names in DIR left out, and why (dotfiles, links out of DIR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// The S3 requests this run made, by kind.
    pub requests: CallCounts,
    /// A content hash of what the bucket now holds (keys and ETags): invalidations use it as their
    /// caller reference.
    #[serde(skip)]
    pub content_hash: String,
}

impl Report for SyncReport {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlannedAction {
    Upload,
    Update,
    Delete,
}

impl fmt::Display for PlannedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlannedAction::Upload => "upload",
            PlannedAction::Update => "update",
            PlannedAction::Delete => "delete",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct PlannedChange {
    pub action: PlannedAction,
    pub key: String,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.plan {
            writeln!(
                f,
                "{:<8} s3://{}/{}",
                c.action.to_string(),
                self.bucket,
                c.key
            )?;
        }
        let (verb, del) = if self.dry_run {
            ("would upload", "would delete")
        } else {
            ("uploaded", "deleted")
        };
        write!(
            f,
            "{verb} {} ({} bytes), {del} {}, {} unchanged — s3://{}",
            self.uploaded, self.bytes, self.deleted, self.unchanged, self.bucket
        )?;
        let r = self.requests;
        let kinds: Vec<String> = [
            ("list", r.list),
            ("head", r.head),
            ("put", r.put),
            ("delete", r.delete),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
        if !kinds.is_empty() {
            write!(f, " ({} requests)", kinds.join(", "))?;
        }
        if !self.skipped.is_empty() {
            let names = |reason: local::SkipReason| {
                self.skipped
                    .iter()
                    .filter(|s| s.reason == reason)
                    .map(|s| s.key.as_str())
                    .collect::<Vec<_>>()
            };
            let dotfiles = names(local::SkipReason::Dotfile);
            if !dotfiles.is_empty() {
                write!(
                    f,
                    "\nnot published: {} (dotfiles; --include-dotfiles publishes them)",
                    dotfiles.join(", ")
                )?;
            }
            for (reason, why) in [
                (
                    local::SkipReason::LinkOutside,
                    "links to outside the folder",
                ),
                (
                    local::SkipReason::LinkLoop,
                    "links back into a folder they are in",
                ),
                (local::SkipReason::BrokenLink, "links to nothing"),
            ] {
                let keys = names(reason);
                if !keys.is_empty() {
                    write!(f, "\nnot published: {} ({why})", keys.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

/// `config.json` with the deployed API and WebSocket URLs (or the ones given), unless `--no-config`.
async fn config_json(
    ctx: &Context,
    cfn: &Cfn,
    args: &SyncArgs,
) -> anyhow::Result<Option<LocalFile>> {
    if args.no_config {
        return Ok(None);
    }
    let api_url = match &args.api_url {
        Some(u) => u.clone(),
        None => {
            let flag = "--api-url (or --no-config)";
            stacks::output(cfn, ctx.stage(), "auth", "ApiUrl", flag).await?
        }
    };
    let ws_url = match &args.ws_url {
        Some(u) => u.clone(),
        None => {
            let flag = "--ws-url (or --no-config)";
            stacks::output(cfn, ctx.stage(), "websocket", "WebSocketUrl", flag).await?
        }
    };
    let body = serde_json::to_vec_pretty(&serde_json::json!({"apiUrl": api_url, "wsUrl": ws_url}))?;
    Ok(Some(generated("config.json", body)))
}

pub async fn run(ctx: &Context, args: SyncArgs) -> anyhow::Result<SyncReport> {
    let excluded = globs(&args.exclude, args.include_dotfiles)?;
    let (dir, ex) = (args.dir.clone(), excluded.clone());
    let walked = tokio::task::spawn_blocking(move || walk(&dir, &ex)).await??;
    for s in &walked.skipped {
        tracing::warn!(key = %s.key, reason = ?s.reason, "not published");
    }
    let skipped = walked.skipped;
    let found = Arc::new(walked.files);
    let config = ctx.aws().await?;
    let cfn = Cfn::new(&config);
    let bucket = match &args.bucket {
        Some(b) => b.clone(),
        None => stacks::output(&cfn, ctx.stage(), "frontend", "BucketName", "--bucket").await?,
    };
    let s3 = s3_client(&config, ctx.custom_endpoint());
    let calls = Calls::default();
    // Three things at once: hash the files (every core), list the bucket (ranges in parallel), and
    // read the URLs for config.json.
    let key_refs: Vec<&str> = found.iter().map(|f| f.key.as_str()).collect();
    let to_hash = found.clone();
    let hashing = async {
        tokio::task::spawn_blocking(move || hash_files(&to_hash))
            .await
            .map_err(|e| anyhow::anyhow!("hashing the files: {e}"))?
    };
    let (local, remote, config_json) = tokio::join!(
        hashing,
        list_bucket_near(&s3, &bucket, &key_refs, &calls),
        config_json(ctx, &cfn, &args)
    );
    let (mut local, mut remote) = (local?, remote?);
    if let Some(cfg) = config_json? {
        local.retain(|f| f.key != "config.json");
        local.push(cfg);
    }
    let local_keys: HashMap<&str, &LocalFile> = local.iter().map(|f| (f.key.as_str(), f)).collect();
    let concurrency = args.concurrency as usize;
    remote::read_undecided(&s3, &bucket, &mut remote, &local_keys, concurrency, &calls).await;
    let the_plan = plan(&local, &remote, args.delete, args.force, &excluded)?;
    let uploads: Vec<&LocalFile> = the_plan
        .upload
        .iter()
        .filter_map(|(k, _)| local_keys.get(k.as_str()).copied())
        .collect();
    let mut report = SyncReport {
        uploaded: uploads.len(),
        deleted: the_plan.delete.len(),
        unchanged: the_plan.unchanged,
        bytes: uploads.iter().map(|f| f.size).sum(),
        bucket: bucket.clone(),
        dry_run: args.dry_run,
        plan: Vec::new(),
        requests: CallCounts::default(),
        skipped,
        content_hash: String::new(),
    };
    if args.dry_run {
        report.plan = the_plan
            .upload
            .iter()
            .map(|(k, why)| PlannedChange {
                action: match why {
                    Why::New => PlannedAction::Upload,
                    Why::Changed => PlannedAction::Update,
                },
                key: k.clone(),
            })
            .chain(the_plan.delete.iter().map(|k| PlannedChange {
                action: PlannedAction::Delete,
                key: k.clone(),
            }))
            .collect();
        report.requests = calls.counts();
        return Ok(report);
    }
    let bar = ctx
        .progress_enabled()
        .then(indicatif::ProgressBar::no_length);
    upload::upload_all(&s3, &bucket, &uploads, concurrency, &calls, bar).await?;
    delete_keys(&s3, &bucket, None, &the_plan.delete, &calls).await?;
    report.content_hash = remote::content_after(remote, &local, &the_plan.delete);
    report.requests = calls.counts();
    Ok(report)
}
