//! `notesctl destroy`: deletes the stacks in reverse order, after emptying the frontend bucket and
//! removing this stage's code zips, templates and releases. It tells before it loses: while the
//! processing queue or its DLQ holds notes it refuses (unless `--force`), and its report lists what
//! went with the stacks and what was kept.

use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::StackStatus;
use serde::{Deserialize, Serialize};

use crate::aws::artifacts::{self, Artifacts};
use crate::aws::queues::{Depth, Queues};
use crate::aws::s3::{Calls, delete_keys, list_bucket, s3_client};
use crate::aws::{explain, is_transient, stacks};
use crate::context::{Context, Deadline, confirm, parse_duration};
use crate::names;
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    /// Delete without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Delete even while the processing queue or its DLQ holds notes (they are lost with them).
    #[arg(long)]
    pub force: bool,
    /// The code artifacts bucket, if not the default (`notesctl-artifacts-{account}-{region}`); this
    /// stage's zips, templates and releases are deleted from it.
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
    /// How long to wait for the stacks to be deleted (30s, 15m, 1h); past it, destroy reports what is
    /// still being deleted and exits 1.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DestroyReport {
    /// The stacks deleted, in the order they went.
    pub deleted: Vec<String>,
    /// What went with them that held data: the queues with their messages, the event archive, the
    /// site's objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with_them: Vec<String>,
    /// What was kept: the data table (DeletionPolicy Retain), the artifacts bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Report for DestroyReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some())
    }
}

impl fmt::Display for DestroyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() {
            write!(f, "nothing deleted")?;
        } else {
            write!(f, "deleted: {}", self.deleted.join(", "))?;
        }
        if !self.with_them.is_empty() {
            write!(f, "\nwith them: {}", self.with_them.join(", "))?;
        }
        if !self.retained.is_empty() {
            write!(
                f,
                "\nretained: {} (delete by hand if you mean it)",
                self.retained.join(", ")
            )?;
        }
        if let Some(p) = &self.problem {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

/// Deletes every object of a bucket; how many there were.
pub async fn empty_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<usize> {
    let keys: Vec<String> = list_bucket(s3, bucket)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    delete_keys(s3, bucket, None, &keys, &Calls::default()).await?;
    Ok(keys.len())
}

/// Messages a queue holds now: visible, in flight and delayed.
fn held(d: &Depth) -> u64 {
    d.visible + d.in_flight + d.delayed
}

/// What the stage's queues hold, when the event stack (and its queues) are there.
async fn queued(
    config: &aws_config::SdkConfig,
    stage: &str,
) -> anyhow::Result<Option<(Depth, Depth)>> {
    match Queues::find(config, stage, true).await {
        Ok(q) => {
            let depth = q.measure().await?;
            Ok(Some((depth.queue, depth.dlq)))
        }
        Err(e) if is_transient(&e) => Err(e),
        // No queue of that name: nothing to lose.
        Err(_) => Ok(None),
    }
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
        with_them: Vec::new(),
        retained: Vec::new(),
        problem: None,
    };
    if present.is_empty() {
        return Ok(report);
    }
    // Notes already answered 202 but not saved, and dead letters: say so before they go.
    let queues = if present.iter().any(|(s, _)| *s == "event") {
        queued(&config, ctx.stage()).await?
    } else {
        None
    };
    if let Some((queue, dlq)) = &queues
        && (held(queue) > 0 || held(dlq) > 0)
        && !args.force
    {
        anyhow::bail!(
            "refusing to destroy: {} holds {} notes not saved yet and {} holds {} dead letters, which would be lost with the event stack. Let them drain (`notesctl queue-depth --watch`), redrive the dead letters (`notesctl redrive-dlq`), or pass --force to lose them",
            queue.name,
            held(queue),
            dlq.name,
            held(dlq)
        );
    }
    if !args.yes {
        let names: Vec<&str> = present.iter().map(|(_, n)| n.as_str()).collect();
        confirm(&format!("delete {}", names.join(", ")), "nothing deleted").await?;
    }
    if present.iter().any(|(s, _)| *s == "frontend")
        && let Ok(bucket) =
            stacks::output(&cfn, ctx.stage(), "frontend", "BucketName", "--stage").await
    {
        let n = empty_bucket(&s3, &bucket).await?;
        ctx.say(format!("emptied s3://{bucket} ({n} objects)"));
        report
            .with_them
            .push(format!("site bucket {bucket} ({n} objects)"));
    }
    // This stage's code zips, templates and releases (other stages share the bucket and keep theirs).
    let store = Artifacts::locate(&config, s3.clone(), args.artifacts_bucket.as_deref()).await?;
    if store.exists().await? {
        let n = store.delete_stage(ctx.stage()).await?;
        if n > 0 {
            ctx.say(format!(
                "deleted this stage's {n} objects (code zips, templates and releases) from s3://{}/{}",
                store.bucket,
                artifacts::stage_prefix(ctx.stage())
            ));
        }
        report.retained.push(format!(
            "artifacts bucket {} (shared by every stage; this stage's {n} objects deleted: code zips, templates, releases)",
            store.bucket
        ));
    }
    let deadline = Deadline::after(args.timeout);
    for (short, name) in &present {
        ctx.say(format!("deleting {name}"));
        cfn.delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| explain(&format!("deleting {name}"), &e))?;
        let spinner = ctx.spinner();
        if let Some(s) = &spinner {
            s.set_message(format!("deleting {name}"));
        }
        let waited = wait_deleted(&cfn, name, &deadline, spinner.as_ref()).await;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if let Some(status) = waited? {
            report.problem = Some(format!(
                "{name} is still {status} after --timeout {}: CloudFormation goes on deleting it. Check it with `notesctl status`, then run destroy again for the stacks before it",
                deadline.shown()
            ));
            return Ok(report);
        }
        report.deleted.push(name.clone());
        match *short {
            "data" => report.retained.push(format!(
                "table {} (DeletionPolicy Retain: users and notes)",
                names::data_table(ctx.stage())
            )),
            "event" => {
                if let Some((queue, dlq)) = &queues {
                    report.with_them.push(format!(
                        "queue {} ({} messages)",
                        queue.name,
                        held(queue)
                    ));
                    report.with_them.push(format!(
                        "dead-letter queue {} ({} messages)",
                        dlq.name,
                        held(dlq)
                    ));
                }
                report
                    .with_them
                    .push(format!("event archive {}-notes-archive", ctx.stage()));
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Waits until the stack is gone; `Some(status)` if it is still being deleted at the deadline.
async fn wait_deleted(
    cfn: &Client,
    name: &str,
    deadline: &Deadline,
    spinner: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<Option<String>> {
    let mut delay = Duration::from_millis(500);
    loop {
        let status = match stacks::describe(cfn, name).await {
            Ok(stack) => stack.and_then(|s| s.stack_status().cloned()),
            // Throttled, a 5xx, a dropped connection: ask again at the next poll.
            Err(e) if is_transient(&e) && !deadline.expired() => {
                Some(StackStatus::DeleteInProgress)
            }
            // Expired credentials, AccessDenied: waiting cannot help.
            Err(e) => return Err(e),
        };
        match status {
            None | Some(StackStatus::DeleteComplete) => return Ok(None),
            Some(StackStatus::DeleteFailed) => anyhow::bail!(
                "deleting {name} failed: see its events (`aws cloudformation describe-stack-events --stack-name {name}`), fix what they name, and run destroy again"
            ),
            Some(other) => {
                if let Some(s) = spinner {
                    s.set_message(format!(
                        "deleting {name}: {} ({}s)",
                        other.as_str(),
                        deadline.elapsed().as_secs()
                    ));
                }
                if !deadline.sleep(delay).await {
                    return Ok(Some(other.as_str().to_owned()));
                }
            }
        }
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    }
}
