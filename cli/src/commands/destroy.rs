//! `notesctl destroy`: deletes the stacks in reverse order, after emptying the frontend bucket and
//! removing this stage's code zips; reports what was deleted and what a `DeletionPolicy` keeps.

use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::StackStatus;
use serde::{Deserialize, Serialize};

use crate::aws::artifacts::{self, Artifacts};
use crate::aws::s3::{Calls, delete_keys, list_bucket, s3_client};
use crate::aws::{explain, stacks};
use crate::context::{Context, confirm};
use crate::output::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    /// Delete without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The code artifacts bucket, if not the default (`notesctl-artifacts-{account}-{region}`); this
    /// stage's zips are deleted from it.
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestroyReport {
    pub deleted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<String>,
}

impl Report for DestroyReport {}

impl fmt::Display for DestroyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() {
            write!(f, "nothing to delete")?;
        } else {
            write!(f, "deleted: {}", self.deleted.join(", "))?;
        }
        if !self.retained.is_empty() {
            write!(
                f,
                "\nretained by DeletionPolicy: {} (delete by hand if you mean it)",
                self.retained.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Deletes every object of a bucket under `prefix` (all of it without one); how many there were.
pub async fn empty_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: Option<&str>,
) -> anyhow::Result<usize> {
    let keys: Vec<String> = list_bucket(s3, bucket)
        .await?
        .into_iter()
        .filter(|o| prefix.is_none_or(|p| o.key.starts_with(p)))
        .map(|o| o.key)
        .collect();
    delete_keys(s3, bucket, None, &keys, &Calls::default()).await?;
    Ok(keys.len())
}

pub async fn run(ctx: &Context, args: DestroyArgs) -> anyhow::Result<DestroyReport> {
    let config = ctx.aws().await?;
    let cfn = Client::new(&config);
    let s3 = s3_client(&config, ctx.custom_endpoint());
    let mut present = Vec::new();
    for short in stacks::STACKS.iter().rev() {
        let name = stacks::stack_name(ctx.stage(), short);
        if stacks::describe(&cfn, &name).await?.is_some() {
            present.push((*short, name));
        }
    }
    let mut report = DestroyReport {
        deleted: Vec::new(),
        retained: Vec::new(),
    };
    if present.is_empty() {
        return Ok(report);
    }
    if !args.yes {
        let names: Vec<&str> = present.iter().map(|(_, n)| n.as_str()).collect();
        confirm(&format!("delete {}", names.join(", ")), "nothing deleted").await?;
    }
    if present.iter().any(|(s, _)| *s == "frontend")
        && let Ok(bucket) =
            stacks::output(&cfn, ctx.stage(), "frontend", "BucketName", "--stage").await
    {
        let n = empty_bucket(&s3, &bucket, None).await?;
        ctx.say(format!("emptied s3://{bucket} ({n} objects)"));
    }
    // This stage's code zips (other stages share the bucket and keep theirs).
    let store = Artifacts::locate(&config, s3.clone(), args.artifacts_bucket.as_deref()).await?;
    if store.exists().await? {
        let n = store.delete_stage(ctx.stage()).await?;
        if n > 0 {
            ctx.say(format!(
                "deleted this stage's {n} code zips from s3://{}/{}",
                store.bucket,
                artifacts::stage_prefix(ctx.stage())
            ));
        }
    }
    for (short, name) in &present {
        ctx.say(format!("deleting {name}"));
        cfn.delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| explain(&format!("deleting {name}"), &e))?;
        let mut delay = Duration::from_millis(500);
        loop {
            let status = match stacks::describe(&cfn, name).await {
                Ok(stack) => stack.and_then(|s| s.stack_status().cloned()),
                // Throttled or a blip: keep waiting rather than move on while the stack still exists.
                Err(_) => Some(StackStatus::DeleteInProgress),
            };
            match status {
                None | Some(StackStatus::DeleteComplete) => break,
                Some(StackStatus::DeleteFailed) => anyhow::bail!(
                    "deleting {name} failed: see its events (`aws cloudformation describe-stack-events --stack-name {name}`), fix what they name, and run destroy again"
                ),
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
        report.deleted.push(name.clone());
        if *short == "data" {
            report.retained.push(format!("{}-data-table", ctx.stage()));
        }
    }
    Ok(report)
}
