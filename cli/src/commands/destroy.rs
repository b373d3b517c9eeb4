//! `notesctl destroy`: deletes the stacks in reverse order, after emptying the frontend bucket, and
//! then — only once every stack is gone — this stage's code zips, templates and releases (a stack
//! that cannot be deleted leaves the stage's history in place). It tells before it loses: while the
//! processing queue or its DLQ holds notes, or how many they hold cannot be read, it refuses (unless
//! `--force`), and its report lists what went with the stacks and what was kept.

use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::StackStatus;
use serde::{Deserialize, Serialize};

use crate::aws::artifacts::{self, Artifacts};
use crate::aws::queues::{Depth, depth_of};
use crate::aws::s3::{Calls, delete_keys, list_bucket, s3_client};
use crate::aws::{Failure, explain, failure_of, is_transient, stacks};
use crate::context::{Context, Deadline, confirm, parse_duration};
use crate::names;
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    /// Delete without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Delete even while the processing queue or its DLQ holds notes, or how many they hold cannot
    /// be read (they are lost with them).
    #[arg(long)]
    pub force: bool,
    /// The stage's name again, which destroying a protected stage (prod, production, prd or live
    /// between its hyphens) requires, with or without --yes.
    #[arg(long, value_name = "STAGE")]
    pub confirm_stage: Option<String>,
    /// The code artifacts bucket, if not the default (`notesctl-artifacts-{account}-{region}`); this
    /// stage's zips, templates and releases are deleted from it once every stack is gone (kept when
    /// one cannot be deleted).
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

/// One of the stage's queues as the guard read it: its depth, `None` when SQS says it does not
/// exist, or why its depth could not be read.
type Queued = (String, anyhow::Result<Option<Depth>>);

/// What the stage's processing queue and DLQ hold.
async fn queued(sqs: &aws_sdk_sqs::Client, stage: &str) -> [Queued; 2] {
    let (queue, dlq) = (names::queue(stage), names::dlq(stage));
    let (q, d) = tokio::join!(depth_of(sqs, &queue), depth_of(sqs, &dlq));
    [(queue, q), (dlq, d)]
}

/// Refuses (without `--force`) while a queue holds notes — or while how many it holds is not known:
/// only SQS saying there is no such queue counts as empty. Expired credentials stop it whatever the
/// flags, with their own next step.
fn guard(queues: &[Queued; 2], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    for (name, depth) in queues {
        match depth {
            // Expired or missing credentials: the next step is new ones, not --force.
            Err(e) if failure_of(e) == Some(Failure::Credentials) => anyhow::bail!("{e:#}"),
            Err(e) => anyhow::bail!(
                "refusing to destroy: {e:#}. How many notes {name} holds is not known, and they would be lost with the event stack: fix that, or pass --force to delete anyway"
            ),
            Ok(_) => {}
        }
    }
    let n = |i: usize| {
        queues[i]
            .1
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map_or(0, held)
    };
    if n(0) > 0 || n(1) > 0 {
        anyhow::bail!(
            "refusing to destroy: {} holds {} notes not saved yet and {} holds {} dead letters, which would be lost with the event stack. Let them drain (`notesctl queue-depth --watch`), redrive the dead letters (`notesctl redrive-dlq`), or pass --force to lose them",
            queues[0].0,
            n(0),
            queues[1].0,
            n(1)
        );
    }
    Ok(())
}

/// The clients destroy calls.
struct Clients {
    cfn: Client,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
}

pub async fn run(ctx: &Context, args: DestroyArgs) -> anyhow::Result<DestroyReport> {
    protected_confirmed(ctx.stage(), args.confirm_stage.as_deref())?;
    let config = ctx.aws().await?;
    let s3 = s3_client(&config, ctx.custom_endpoint());
    let clients = Clients {
        cfn: Client::new(&config),
        s3: s3.clone(),
        sqs: aws_sdk_sqs::Client::new(&config),
    };
    let store = Artifacts::locate(&config, s3, args.artifacts_bucket.as_deref()).await?;
    destroy(ctx, &args, &clients, &store).await
}

/// A protected stage goes only when its name is typed again: `--yes` alone is what a script passes
/// for every stage.
fn protected_confirmed(stage: &str, confirmed: Option<&str>) -> anyhow::Result<()> {
    if !crate::context::protected(stage) || confirmed == Some(stage) {
        return Ok(());
    }
    match confirmed {
        None => anyhow::bail!(
            "refusing to destroy {stage:?}, a protected stage (its name has prod, production, prd or live between hyphens): pass --confirm-stage {stage} to delete its stacks and what they hold"
        ),
        Some(other) => anyhow::bail!(
            "--confirm-stage {other:?} is not the stage being destroyed ({stage:?}): nothing was deleted"
        ),
    }
}

async fn destroy(
    ctx: &Context,
    args: &DestroyArgs,
    clients: &Clients,
    store: &Artifacts,
) -> anyhow::Result<DestroyReport> {
    let (cfn, stage) = (&clients.cfn, ctx.stage());
    let mut present = Vec::new();
    for short in stacks::STACKS.iter().rev() {
        let name = stacks::stack_name(stage, short);
        if stacks::describe(cfn, &name).await?.is_some() {
            present.push((*short, name));
        }
    }
    let mut report = DestroyReport {
        deleted: Vec::new(),
        with_them: Vec::new(),
        retained: Vec::new(),
        problem: None,
    };
    // This stage's code zips, templates and releases (other stages share the bucket and keep theirs):
    // deleted last, once every stack is gone, so that a stack destroy could not delete keeps its
    // history (`notesctl history`, `rollback`).
    let artifacts = store.exists().await?;
    let kept = format!("s3://{}/{}", store.bucket, artifacts::stage_prefix(stage));
    if present.is_empty() {
        // Left by a destroy that stopped before the stacks were gone.
        let left = if artifacts {
            store.keys(&artifacts::stage_prefix(stage)).await?.len()
        } else {
            0
        };
        if left > 0 {
            if !args.yes {
                confirm(
                    &format!("delete this stage's {left} objects (code zips, templates and releases) in {kept}"),
                    "nothing deleted",
                )
                .await?;
            }
            delete_artifacts(ctx, store, &mut report).await?;
        }
        return Ok(report);
    }
    // Notes already answered 202 but not saved, and dead letters: say so before they go.
    let queues = if present.iter().any(|(s, _)| *s == "event") {
        let queues = queued(&clients.sqs, stage).await;
        guard(&queues, args.force)?;
        Some(queues)
    } else {
        None
    };
    if !args.yes {
        let names: Vec<&str> = present.iter().map(|(_, n)| n.as_str()).collect();
        confirm(&format!("delete {}", names.join(", ")), "nothing deleted").await?;
    }
    if present.iter().any(|(s, _)| *s == "frontend")
        && let Ok(bucket) = stacks::output(cfn, stage, "frontend", "BucketName", "--stage").await
    {
        let n = empty_bucket(&clients.s3, &bucket).await?;
        ctx.say(format!("emptied s3://{bucket} ({n} objects)"));
        report
            .with_them
            .push(format!("site bucket {bucket} ({n} objects)"));
    }
    // A stack that could not be deleted stops destroy before the stage's artifacts go, and the
    // error says they are kept — but expired credentials keep their one short line (with its next
    // step), the note going beside it.
    let keeping = |e: anyhow::Error| {
        if !artifacts {
            return e;
        }
        let note = format!(
            "this stage's releases, code zips and templates are kept in {kept} (the next destroy deletes them once every stack is gone)"
        );
        if failure_of(&e) == Some(Failure::Credentials) {
            ctx.say(format!("destroy stopped: {note}"));
            e
        } else {
            e.context(format!("destroy stopped, and {note}"))
        }
    };
    let deadline = Deadline::after(args.timeout);
    for (short, name) in &present {
        ctx.say(format!("deleting {name}"));
        cfn.delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| keeping(explain(&format!("deleting {name}"), &e)))?;
        let spinner = ctx.spinner();
        if let Some(s) = &spinner {
            s.set_message(format!("deleting {name}"));
        }
        let waited = wait_deleted(cfn, name, &deadline, spinner.as_ref()).await;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if let Some(status) = waited.map_err(keeping)? {
            let mut problem = format!(
                "{name} is still {status} after --timeout {}: CloudFormation goes on deleting it. Check it with `notesctl status`, then run destroy again for the stacks before it",
                deadline.shown()
            );
            if artifacts {
                problem.push_str(&format!(
                    ". This stage's releases, code zips and templates are kept in {kept} until every stack is gone (the next destroy deletes them)"
                ));
                report.retained.insert(
                    0,
                    format!(
                        "artifacts bucket {} (this stage's code zips, templates and releases kept: not every stack is gone)",
                        store.bucket
                    ),
                );
            }
            report.problem = Some(problem);
            return Ok(report);
        }
        report.deleted.push(name.clone());
        match *short {
            "data" => report.retained.push(format!(
                "table {} (DeletionPolicy Retain: users and notes)",
                names::data_table(stage)
            )),
            "event" => {
                for (i, (queue, depth)) in queues.iter().flatten().enumerate() {
                    let what = if i == 0 { "queue" } else { "dead-letter queue" };
                    match depth {
                        Ok(Some(d)) => report
                            .with_them
                            .push(format!("{what} {queue} ({} messages)", held(d))),
                        Ok(None) => {}
                        Err(_) => report.with_them.push(format!(
                            "{what} {queue} (its messages could not be counted)"
                        )),
                    }
                }
                report
                    .with_them
                    .push(format!("event archive {stage}-notes-archive"));
            }
            _ => {}
        }
    }
    if artifacts {
        delete_artifacts(ctx, store, &mut report).await?;
    }
    Ok(report)
}

/// Deletes this stage's objects from the artifacts bucket (every stack of the stage is gone).
async fn delete_artifacts(
    ctx: &Context,
    store: &Artifacts,
    report: &mut DestroyReport,
) -> anyhow::Result<()> {
    let n = store.delete_stage(ctx.stage()).await?;
    if n > 0 {
        ctx.say(format!(
            "deleted this stage's {n} objects (code zips, templates and releases) from s3://{}/{}",
            store.bucket,
            artifacts::stage_prefix(ctx.stage())
        ));
    }
    // First among what was kept, as before the stacks' own.
    report.retained.insert(
        0,
        format!(
            "artifacts bucket {} (shared by every stage; this stage's {n} objects deleted: code zips, templates, releases)",
            store.bucket
        ),
    );
    Ok(())
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

#[cfg(test)]
mod recorded {
    //! The guard and the order of deletion, on recorded SQS, CloudFormation and S3 answers.
    use super::*;
    use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::{
        DescribeStacksError, DescribeStacksOutput,
    };
    use aws_sdk_cloudformation::types::Stack;
    use aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput;
    use aws_sdk_s3::operation::head_bucket::HeadBucketOutput;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
    use aws_sdk_s3::types::Object;
    use aws_sdk_sqs::operation::get_queue_attributes::{
        GetQueueAttributesError, GetQueueAttributesOutput,
    };
    use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
    use aws_sdk_sqs::types::QueueAttributeName;
    use aws_sdk_sqs::types::error::QueueDoesNotExist;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    fn meta(code: &str) -> ErrorMetadata {
        ErrorMetadata::builder()
            .code(code)
            .message(format!("{code} (recorded)"))
            .build()
    }

    fn url_ok() -> Rule {
        mock!(aws_sdk_sqs::Client::get_queue_url).then_compute_output(|r| {
            GetQueueUrlOutput::builder()
                .queue_url(format!("https://sqs/{}", r.queue_name().unwrap_or("")))
                .build()
        })
    }

    fn depth(visible: &str) -> Rule {
        let visible = visible.to_owned();
        mock!(aws_sdk_sqs::Client::get_queue_attributes).then_output(move || {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, &visible)
                .build()
        })
    }

    async fn read(rules: &[&Rule]) -> [Queued; 2] {
        let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules);
        queued(&sqs, "p").await
    }

    /// Only "no such queue" counts as empty: AccessDenied looking a queue up or reading its depth
    /// refuses, naming the queue, the cause and --force; --force goes on.
    #[tokio::test]
    async fn a_queue_whose_depth_cannot_be_read_refuses_unless_forced() {
        let denied_url = mock!(aws_sdk_sqs::Client::get_queue_url)
            .then_error(|| GetQueueUrlError::generic(meta("AccessDenied")));
        let queues = read(&[&denied_url]).await;
        let e = guard(&queues, false).unwrap_err().to_string();
        assert!(
            e.starts_with("refusing to destroy")
                && e.contains("p-note-processing-queue")
                && e.contains("AccessDenied")
                && e.contains("--force")
                && !e.contains('\n'),
            "{e}"
        );
        guard(&queues, true).expect("--force deletes anyway");

        let (url, denied_depth) = (
            url_ok(),
            mock!(aws_sdk_sqs::Client::get_queue_attributes)
                .then_error(|| GetQueueAttributesError::generic(meta("AccessDenied"))),
        );
        let queues = read(&[&url, &denied_depth]).await;
        let e = guard(&queues, false).unwrap_err().to_string();
        assert!(
            e.contains("reading the attributes of p-note-processing-queue failed: AccessDenied")
                && e.contains("is not known")
                && e.contains("--force"),
            "{e}"
        );
        assert!(guard(&queues, true).is_ok());

        let expired = mock!(aws_sdk_sqs::Client::get_queue_url)
            .then_error(|| GetQueueUrlError::generic(meta("ExpiredToken")));
        let queues = read(&[&expired]).await;
        let e = guard(&queues, false).unwrap_err().to_string();
        assert!(
            e.contains("looking up queue p-note-processing-queue failed: ExpiredToken")
                && e.contains("aws sso login"),
            "{e}"
        );
    }

    /// SQS's "does not exist", modeled or by either protocol's code: nothing to lose.
    #[tokio::test]
    async fn only_a_queue_that_does_not_exist_counts_as_empty() {
        let modeled = mock!(aws_sdk_sqs::Client::get_queue_url).then_error(|| {
            GetQueueUrlError::QueueDoesNotExist(QueueDoesNotExist::builder().build())
        });
        for code in [
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
        ] {
            let by_code = mock!(aws_sdk_sqs::Client::get_queue_url)
                .then_error(move || GetQueueUrlError::generic(meta(code)));
            let queues = read(&[&by_code]).await;
            assert!(queues.iter().all(|(_, d)| matches!(d, Ok(None))), "{code}");
            guard(&queues, false).unwrap();
        }
        let queues = read(&[&modeled]).await;
        assert!(queues.iter().all(|(_, d)| matches!(d, Ok(None))));
        guard(&queues, false).unwrap();
        // Gone between the lookup and the read: empty too.
        let gone = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_error(|| {
            GetQueueAttributesError::QueueDoesNotExist(QueueDoesNotExist::builder().build())
        });
        let url = url_ok();
        guard(&read(&[&url, &gone]).await, false).unwrap();
        // Other codes are not "does not exist".
        let other = mock!(aws_sdk_sqs::Client::get_queue_url)
            .then_error(|| GetQueueUrlError::generic(meta("InvalidAddress")));
        assert!(guard(&read(&[&other]).await, false).is_err());
        // Read, and holding notes: the old refusal.
        let (url, full) = (url_ok(), depth("3"));
        let e = guard(&read(&[&url, &full]).await, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p-note-processing-queue holds 3 notes"), "{e}");
    }

    fn stack(name: &str, status: StackStatus) -> Stack {
        Stack::builder()
            .stack_name(name)
            .stack_status(status)
            .creation_time(aws_sdk_cloudformation::primitives::DateTime::from_secs(0))
            .build()
    }

    fn not_found() -> DescribeStacksError {
        DescribeStacksError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack with id p-x-stack does not exist")
                .build(),
        )
    }

    /// Stage `p`, `destroy --yes`, with these answers; the artifacts bucket `b` exists and holds
    /// one release of `p`.
    async fn destroy_p(cfn: &[&Rule], sqs: &[&Rule]) -> (anyhow::Result<DestroyReport>, Rule) {
        destroy_p_with(cfn, sqs, &[]).await
    }

    /// As [`destroy_p`], with more of destroy's flags.
    async fn destroy_p_with(
        cfn: &[&Rule],
        sqs: &[&Rule],
        extra: &[&str],
    ) -> (anyhow::Result<DestroyReport>, Rule) {
        use clap::Parser;
        let mut argv = vec!["notesctl", "--quiet", "--stage", "p", "destroy", "--yes"];
        argv.extend_from_slice(extra);
        let cli = crate::Cli::parse_from(argv);
        let crate::Command::Destroy(args) = cli.command else {
            unreachable!()
        };
        let ctx = Context::new(cli.global);
        let head = mock!(aws_sdk_s3::Client::head_bucket)
            .then_output(|| HeadBucketOutput::builder().build());
        let list = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| {
            ListObjectsV2Output::builder()
                .contents(
                    Object::builder()
                        .key("p/releases/20261202-010000-000.json")
                        .build(),
                )
                .build()
        });
        let delete = mock!(aws_sdk_s3::Client::delete_objects)
            .then_output(|| DeleteObjectsOutput::builder().build());
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&head, &list, &delete]);
        let clients = Clients {
            cfn: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, cfn),
            s3: s3.clone(),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, sqs),
        };
        let store = Artifacts {
            s3,
            bucket: "b".into(),
            owner: "123456789012".into(),
            plain_http: false,
        };
        (destroy(&ctx, &args, &clients, &store).await, delete)
    }

    /// A stack whose delete fails stops destroy with the stage's releases, zips and templates
    /// still in the bucket, and says so; when every stack goes, they go after them.
    #[tokio::test]
    async fn a_failed_stack_delete_keeps_the_release_records() {
        let describe = |last: StackStatus| {
            mock!(aws_sdk_cloudformation::Client::describe_stacks)
                .match_requests(|r| r.stack_name() == Some("p-data-stack"))
                .sequence()
                .output(|| {
                    DescribeStacksOutput::builder()
                        .stacks(stack("p-data-stack", StackStatus::CreateComplete))
                        .build()
                })
                .output(move || {
                    DescribeStacksOutput::builder()
                        .stacks(stack("p-data-stack", last.clone()))
                        .build()
                })
                .repeatedly()
                .build()
        };
        let others = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(not_found);
        let delete_stack = mock!(aws_sdk_cloudformation::Client::delete_stack)
            .then_output(|| DeleteStackOutput::builder().build());

        let failing = describe(StackStatus::DeleteFailed);
        let (result, deleted) = destroy_p(&[&failing, &others, &delete_stack], &[]).await;
        let e = format!("{:#}", result.unwrap_err());
        assert!(
            e.contains("deleting p-data-stack failed")
                && e.contains("kept in s3://b/p/")
                && !e.contains('\n'),
            "{e}"
        );
        assert_eq!(delete_stack.num_calls(), 1);
        assert_eq!(deleted.num_calls(), 0, "the release records stay");

        let gone = describe(StackStatus::DeleteComplete);
        let (result, deleted) = destroy_p(&[&gone, &others, &delete_stack], &[]).await;
        let report = result.unwrap();
        assert_eq!(report.deleted, ["p-data-stack"]);
        assert_eq!(deleted.num_calls(), 1, "deleted last, after the stacks");
    }

    /// `--timeout` reached while CloudFormation still deletes a stack: exit 1, not an error, and the
    /// report names the stack still being deleted, its status and the limit; the stacks before it
    /// are not touched and the stage's artifacts stay.
    #[tokio::test]
    async fn a_delete_still_in_progress_at_the_timeout_is_exit_1_naming_the_stack() {
        let data = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .match_requests(|r| r.stack_name() == Some("p-data-stack"))
            .sequence()
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack("p-data-stack", StackStatus::CreateComplete))
                    .build()
            })
            .output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack("p-data-stack", StackStatus::DeleteInProgress))
                    .build()
            })
            .repeatedly()
            .build();
        let event = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .match_requests(|r| r.stack_name() == Some("p-event-stack"))
            .then_output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack("p-event-stack", StackStatus::CreateComplete))
                    .build()
            });
        let others = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(not_found);
        let delete_stack = mock!(aws_sdk_cloudformation::Client::delete_stack)
            .then_output(|| DeleteStackOutput::builder().build());
        let (url, empty) = (url_ok(), depth("0"));
        let started = std::time::Instant::now();
        let (result, deleted) = destroy_p_with(
            &[&data, &event, &others, &delete_stack],
            &[&url, &empty],
            &["--timeout", "1s"],
        )
        .await;
        let report = result.expect("a report, not an error");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(report.exit(), Exit::Problem);
        assert_eq!(report.exit().code(), std::process::ExitCode::from(1));
        let problem = report.problem.as_deref().expect("a problem");
        assert!(
            problem.starts_with("p-data-stack is still DELETE_IN_PROGRESS after --timeout 1s")
                && problem.contains("notesctl status")
                && problem.contains("kept in s3://b/p/"),
            "{problem}"
        );
        assert!(report.deleted.is_empty(), "{report:?}");
        assert_eq!(
            delete_stack.num_calls(),
            1,
            "p-event-stack waits for p-data-stack"
        );
        assert_eq!(deleted.num_calls(), 0, "the release records stay");
        assert!(
            report.retained[0].contains("artifacts bucket b"),
            "{report:?}"
        );
        let text = report.to_string();
        assert!(
            text.contains("nothing deleted")
                && text.contains("p-data-stack is still DELETE_IN_PROGRESS"),
            "{text}"
        );
    }

    /// The audit's case: SQS denies reading the queues while the event stack is there — nothing
    /// is deleted without --force.
    #[tokio::test]
    async fn destroy_deletes_nothing_when_the_queues_cannot_be_read() {
        let event = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .match_requests(|r| r.stack_name() == Some("p-event-stack"))
            .then_output(|| {
                DescribeStacksOutput::builder()
                    .stacks(stack("p-event-stack", StackStatus::CreateComplete))
                    .build()
            });
        let others = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(not_found);
        let delete_stack = mock!(aws_sdk_cloudformation::Client::delete_stack)
            .then_output(|| DeleteStackOutput::builder().build());
        let denied = mock!(aws_sdk_sqs::Client::get_queue_url)
            .then_error(|| GetQueueUrlError::generic(meta("AccessDenied")));
        let (result, deleted) = destroy_p(&[&event, &others, &delete_stack], &[&denied]).await;
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains("refusing to destroy") && e.contains("--force"),
            "{e}"
        );
        assert_eq!(delete_stack.num_calls(), 0, "no stack deleted");
        assert_eq!(deleted.num_calls(), 0, "no artifacts deleted");
    }
}
