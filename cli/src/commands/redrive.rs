//! `notesctl redrive-dlq`: moves dead-lettered notes back to the processing queue.
//!
//! By default SQS's own `StartMessageMoveTask`, with progress from `ListMessageMoveTasks`. Where the
//! service lacks it (emulators, older regions), with `--manual`, or with `--max`: receive from the DLQ,
//! send to the queue keeping body and attributes (and FIFO group/deduplication ids), and delete from
//! the DLQ only after the send succeeded — a crash may duplicate a batch, never lose a message.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::aws::explain;
use crate::aws::queues::Queues;
use crate::context::{Context, LocalArg, confirm};
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct RedriveArgs {
    /// Move without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Count the dead letters and show a sample; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move at most N messages (implies --manual: a move task cannot stop at a count).
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Limit the rate of moving.
    #[arg(long, value_name = "N")]
    pub max_per_second: Option<u32>,
    /// Receive, send and delete from here instead of an SQS move task.
    #[arg(long)]
    pub manual: bool,
    /// Seconds a message received by a manual redrive stays hidden while it is moved. After an
    /// interrupted run, the next one waits up to this long for those messages to reappear.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub visibility_timeout: u32,
    #[command(flatten)]
    pub local: LocalArg,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    MoveTask,
    Manual,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub message_id: String,
    pub event_type: Option<String>,
    pub note_id: Option<String>,
    pub username: Option<String>,
    pub receive_count: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    pub moved: u64,
    pub failed: u64,
    pub method: Method,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Dead letters counted before moving.
    pub found: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Sample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub source: String,
    pub destination: String,
}

impl Report for RedriveReport {
    /// Interrupted, or a message the queue refused: a problem the run found.
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some() || self.failed > 0)
    }
}

impl fmt::Display for RedriveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            writeln!(
                f,
                "{} dead-lettered messages in {} (dry run: nothing moved)",
                self.found, self.source
            )?;
            for s in &self.sample {
                writeln!(
                    f,
                    "  {}  {}  note {}  by {}  received {} times",
                    s.message_id,
                    s.event_type.as_deref().unwrap_or("?"),
                    s.note_id.as_deref().unwrap_or("?"),
                    s.username.as_deref().unwrap_or("?"),
                    s.receive_count.as_deref().unwrap_or("?")
                )?;
            }
            return write!(
                f,
                "Run again without --dry-run to move them to {}.",
                self.destination
            );
        }
        let how = match self.method {
            Method::MoveTask => "SQS move task",
            Method::Manual => "manual receive/send/delete",
        };
        write!(
            f,
            "moved {} of {} messages from {} to {} ({how})",
            self.moved, self.found, self.source, self.destination
        )?;
        if self.failed > 0 {
            write!(f, "; {} failed and stay in the DLQ", self.failed)?;
        }
        if let Some(p) = &self.problem {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

fn sample_of(m: &aws_sdk_sqs::types::Message) -> Sample {
    let body: serde_json::Value = m
        .body()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let detail = body.get("detail").unwrap_or(&body);
    let s = |k: &str| detail.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Sample {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        event_type: s("eventType"),
        note_id: s("noteId"),
        username: s("username"),
        receive_count: m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .cloned(),
    }
}

async fn arn_of(sqs: &Client, url: &str) -> anyhow::Result<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| explain("reading the queue ARN", &e))?;
    out.attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| anyhow::anyhow!("{url} has no QueueArn attribute"))
}

pub async fn run(ctx: &Context, args: RedriveArgs) -> anyhow::Result<RedriveReport> {
    let config = ctx.aws_or_local(&args.local).await?;
    let queues = Queues::find(&config, ctx.stage(), args.local.local.is_some()).await?;
    let sqs = &queues.sqs;
    let depth = queues.measure().await?;
    let found = depth.dlq.visible + depth.dlq.in_flight;
    let mut report = RedriveReport {
        moved: 0,
        failed: 0,
        method: if args.manual || args.max.is_some() {
            Method::Manual
        } else {
            Method::MoveTask
        },
        dry_run: args.dry_run,
        found,
        sample: Vec::new(),
        problem: None,
        source: queues.dlq.name.clone(),
        destination: queues.queue.name.clone(),
    };
    if args.dry_run {
        let out = sqs
            .receive_message()
            .queue_url(&queues.dlq.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| explain("sampling the DLQ", &e))?;
        report.sample = out.messages().iter().map(sample_of).collect();
        return Ok(report);
    }
    if found == 0 {
        return Ok(report);
    }
    if !args.yes {
        confirm(
            &format!(
                "move {found} messages from {} to {}",
                report.source, report.destination
            ),
            "nothing moved",
        )
        .await?;
    }
    if report.method == Method::MoveTask {
        match move_task(ctx, sqs, &queues, &args, &mut report).await? {
            MoveOutcome::Done => {}
            MoveOutcome::Unsupported(why) => {
                ctx.say(format!(
                    "the SQS move task is not available here ({why}); moving messages one batch at a time"
                ));
                report.method = Method::Manual;
            }
        }
    }
    if report.method == Method::Manual
        && let Err(e) = manual(ctx, sqs, &queues, &args, &mut report).await
    {
        // What moved stays moved: report it, and how to finish.
        report.problem = Some(format!(
            "interrupted after moving {} messages: {e:#}. Nothing was lost; run the command again to finish (a batch in flight may reappear after --visibility-timeout)",
            report.moved
        ));
    }
    Ok(report)
}

enum MoveOutcome {
    Done,
    Unsupported(String),
}

async fn move_task(
    ctx: &Context,
    sqs: &Client,
    queues: &Queues,
    args: &RedriveArgs,
    report: &mut RedriveReport,
) -> anyhow::Result<MoveOutcome> {
    let (dlq_arn, queue_arn) =
        tokio::try_join!(arn_of(sqs, &queues.dlq.url), arn_of(sqs, &queues.queue.url))?;
    let running = match sqs
        .list_message_move_tasks()
        .source_arn(&dlq_arn)
        .max_results(10)
        .send()
        .await
    {
        Ok(out) => out
            .results()
            .iter()
            .find(|t| t.status() == Some("RUNNING"))
            .cloned(),
        Err(e) => return Ok(MoveOutcome::Unsupported(unsupported_reason(&e))),
    };
    if let Some(t) = running {
        report.problem = Some(format!(
            "a move task is already running on {} (task {}, {} of {} moved); wait for it or cancel it with `aws sqs cancel-message-move-task --task-handle {}`",
            report.source,
            t.task_handle().unwrap_or("?"),
            t.approximate_number_of_messages_moved(),
            t.approximate_number_of_messages_to_move().unwrap_or(0),
            t.task_handle().unwrap_or("?"),
        ));
        return Ok(MoveOutcome::Done);
    }
    let started = sqs
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .destination_arn(&queue_arn)
        .set_max_number_of_messages_per_second(args.max_per_second.map(|n| n as i32))
        .send()
        .await;
    let handle = match started {
        Ok(out) => out.task_handle.unwrap_or_default(),
        Err(e) => return Ok(MoveOutcome::Unsupported(unsupported_reason(&e))),
    };
    let mut delay = Duration::from_millis(500);
    loop {
        let out = sqs
            .list_message_move_tasks()
            .source_arn(&dlq_arn)
            .max_results(10)
            .send()
            .await
            .map_err(|e| explain("reading the move task's progress", &e))?;
        let task = out
            .results()
            .iter()
            .find(|t| t.task_handle() == Some(handle.as_str()) || handle.is_empty())
            .cloned();
        let Some(task) = task else {
            anyhow::bail!("the move task {handle} disappeared from ListMessageMoveTasks");
        };
        report.moved = task.approximate_number_of_messages_moved() as u64;
        let total = task
            .approximate_number_of_messages_to_move()
            .unwrap_or(report.found as i64);
        match task.status().unwrap_or("RUNNING") {
            "COMPLETED" => return Ok(MoveOutcome::Done),
            "FAILED" => {
                report.problem = Some(format!(
                    "the move task failed after {} messages: {}",
                    report.moved,
                    task.failure_reason().unwrap_or("no reason given")
                ));
                return Ok(MoveOutcome::Done);
            }
            "CANCELLED" | "CANCELLING" => {
                report.problem = Some(format!(
                    "the move task was cancelled after {} messages",
                    report.moved
                ));
                return Ok(MoveOutcome::Done);
            }
            _ => ctx.say(format!("moving: {} of {total}", report.moved)),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn unsupported_reason<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    }
}

async fn manual(
    ctx: &Context,
    sqs: &Client,
    queues: &Queues,
    args: &RedriveArgs,
    report: &mut RedriveReport,
) -> anyhow::Result<()> {
    let fifo = queues.queue.url.ends_with(".fifo");
    let limit = args.max.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut empty_polls = 0;
    let mut waiting_since: Option<Instant> = None;
    while report.moved < limit {
        let want = (limit - report.moved).min(10) as i32;
        let got = sqs
            .receive_message()
            .queue_url(&queues.dlq.url)
            .max_number_of_messages(want)
            .wait_time_seconds(1)
            .visibility_timeout(args.visibility_timeout as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| {
                explain(
                    &format!(
                        "receiving from {} after moving {}",
                        queues.dlq.name, report.moved
                    ),
                    &e,
                )
            })?;
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            empty_polls += 1;
            if empty_polls < 2 {
                continue;
            }
            // Messages hidden by an interrupted earlier run come back when their visibility
            // timeout ends: wait for them rather than stop short.
            let in_flight = queues.measure().await?.dlq.in_flight;
            let waited = waiting_since.get_or_insert_with(Instant::now).elapsed();
            if in_flight == 0 || waited > Duration::from_secs(args.visibility_timeout as u64 + 5) {
                break;
            }
            ctx.say(format!(
                "{in_flight} messages are in flight in {} (an interrupted run?); waiting for them",
                queues.dlq.name
            ));
            continue;
        }
        empty_polls = 0;
        waiting_since = None;
        let mut entries = Vec::new();
        let mut receipts: HashMap<String, String> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            let id = format!("m{i}");
            let sys = m.attributes();
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(&id)
                .message_body(m.body().unwrap_or_default())
                .set_message_attributes(m.message_attributes().cloned());
            if fifo {
                entry = entry
                    .set_message_group_id(
                        sys.and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                            .cloned(),
                    )
                    .set_message_deduplication_id(
                        sys.and_then(|a| {
                            a.get(&MessageSystemAttributeName::MessageDeduplicationId)
                        })
                        .cloned(),
                    );
            }
            entries.push(
                entry
                    .build()
                    .map_err(|e| anyhow::anyhow!("building a send entry: {e}"))?,
            );
            receipts.insert(id, m.receipt_handle().unwrap_or_default().to_owned());
        }
        let sent = sqs
            .send_message_batch()
            .queue_url(&queues.queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                explain(
                    &format!(
                        "sending to {} after moving {}",
                        queues.queue.name, report.moved
                    ),
                    &e,
                )
            })?;
        for f in sent.failed() {
            report.failed += 1;
            tracing::warn!(
                entry = f.id(),
                code = f.code(),
                reason = f.message().unwrap_or_default(),
                "a message was not sent; it stays in the DLQ"
            );
        }
        // Only what the queue accepted leaves the DLQ.
        let deletes: Vec<DeleteMessageBatchRequestEntry> = sent
            .successful()
            .iter()
            .filter_map(|s| receipts.get(s.id()).map(|r| (s.id(), r)))
            .map(|(id, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(r)
                    .build()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("building a delete entry: {e}"))?;
        let n = deletes.len() as u64;
        if n > 0 {
            sqs.delete_message_batch()
                .queue_url(&queues.dlq.url)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| explain(&format!("deleting moved messages from {} (they were sent; a rerun may duplicate this batch)", queues.dlq.name), &e))?;
        }
        report.moved += n;
        ctx.say(format!("moved {} of {}", report.moved, report.found));
        if let Some(rate) = args.max_per_second.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(report.moved as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The native move task, which moto lacks, on recorded SQS responses.
    use super::*;
    use crate::aws::queues::QueueRef;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput;
    use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput;
    use aws_sdk_sqs::types::ListMessageMoveTasksResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn ctx() -> Context {
        use clap::Parser;
        Context::new(crate::Cli::parse_from(["notesctl", "--quiet", "queue-depth"]).global)
    }

    fn args() -> RedriveArgs {
        RedriveArgs {
            yes: true,
            dry_run: false,
            max: None,
            max_per_second: Some(50),
            manual: false,
            visibility_timeout: 30,
            local: LocalArg::default(),
        }
    }

    fn report() -> RedriveReport {
        RedriveReport {
            moved: 0,
            failed: 0,
            method: Method::MoveTask,
            dry_run: false,
            found: 10,
            sample: vec![],
            problem: None,
            source: "p-note-processing-dlq".into(),
            destination: "p-note-processing-queue".into(),
        }
    }

    fn task(status: &str, moved: i64) -> ListMessageMoveTasksResultEntry {
        let mut t = ListMessageMoveTasksResultEntry::builder()
            .task_handle("h1")
            .status(status)
            .source_arn("arn:aws:sqs:eu-west-2:1:p-note-processing-dlq")
            .approximate_number_of_messages_moved(moved)
            .approximate_number_of_messages_to_move(10);
        if status == "FAILED" {
            t = t.failure_reason("AWS.SimpleQueueService.NonExistentQueue");
        }
        t.build()
    }

    fn arns() -> aws_smithy_mocks::Rule {
        mock!(Client::get_queue_attributes).then_compute_output(|req| {
            let url = req.queue_url().unwrap_or_default();
            let name = url.rsplit('/').next().unwrap_or_default();
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::QueueArn,
                    format!("arn:aws:sqs:eu-west-2:1:{name}"),
                )
                .build()
        })
    }

    fn queues(client: Client) -> Queues {
        let queue = |name: &str| QueueRef {
            name: name.into(),
            url: format!("https://sqs/1/{name}"),
        };
        Queues::new(
            client,
            queue("p-note-processing-queue"),
            queue("p-note-processing-dlq"),
        )
    }

    /// ListMessageMoveTasks answering these task lists in turn (the last one again after that).
    fn listed(answers: &[&[(&'static str, i64)]]) -> aws_smithy_mocks::Rule {
        let answers: Vec<Vec<(&'static str, i64)>> = answers.iter().map(|a| a.to_vec()).collect();
        let mut rule = mock!(Client::list_message_move_tasks).sequence();
        for tasks in answers {
            rule = rule.output(move || {
                ListMessageMoveTasksOutput::builder()
                    .set_results(Some(tasks.iter().map(|(s, n)| task(s, *n)).collect()))
                    .build()
            });
        }
        rule.repeatedly().build()
    }

    /// StartMessageMoveTask answering with task handle `handle`.
    fn starts(handle: &'static str) -> aws_smithy_mocks::Rule {
        mock!(Client::start_message_move_task).then_output(move || {
            StartMessageMoveTaskOutput::builder()
                .task_handle(handle)
                .build()
        })
    }

    /// Runs the move task against SQS answering by `rules` (and the queues' ARNs).
    async fn run_move_task(
        rules: &[&aws_smithy_mocks::Rule],
    ) -> (anyhow::Result<MoveOutcome>, RedriveReport) {
        let arns = arns();
        let client = mock_client!(
            aws_sdk_sqs,
            RuleMode::MatchAny,
            std::iter::once(&arns).chain(rules.iter().copied()),
            |c| c.retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        );
        let q = queues(client);
        let mut r = report();
        let outcome = move_task(&ctx(), &q.sqs, &q, &args(), &mut r).await;
        (outcome, r)
    }

    #[tokio::test]
    async fn move_task_runs_to_completion_with_progress() {
        let list = listed(&[&[], &[("RUNNING", 4)], &[("COMPLETED", 10)]]);
        let start = mock!(Client::start_message_move_task)
            .match_requests(|r| {
                r.source_arn() == Some("arn:aws:sqs:eu-west-2:1:p-note-processing-dlq")
                    && r.destination_arn()
                        == Some("arn:aws:sqs:eu-west-2:1:p-note-processing-queue")
                    && r.max_number_of_messages_per_second() == Some(50)
            })
            .then_output(|| {
                StartMessageMoveTaskOutput::builder()
                    .task_handle("h1")
                    .build()
            });
        let (outcome, r) = run_move_task(&[&list, &start]).await;
        assert!(matches!(outcome.unwrap(), MoveOutcome::Done));
        assert_eq!((r.moved, r.problem), (10, None));
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_failed_task_reports_its_reason() {
        let (list, start) = (listed(&[&[], &[("FAILED", 3)]]), starts("h1"));
        let (outcome, r) = run_move_task(&[&list, &start]).await;
        outcome.unwrap();
        assert_eq!(r.moved, 3);
        let problem = r.problem.unwrap();
        assert!(
            problem.contains("failed after 3") && problem.contains("NonExistentQueue"),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn an_already_running_task_is_reported_not_duplicated() {
        let (list, start) = (listed(&[&[("RUNNING", 2)]]), starts("h2"));
        let (outcome, r) = run_move_task(&[&list, &start]).await;
        outcome.unwrap();
        assert_eq!(start.num_calls(), 0, "no second task");
        assert!(r.problem.unwrap().contains("already running"));
    }

    #[tokio::test]
    async fn an_unsupported_service_falls_back() {
        let list = mock!(Client::list_message_move_tasks).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
                aws_smithy_types::body::SdkBody::from("{}"),
            )
        });
        let (outcome, _) = run_move_task(&[&list]).await;
        assert!(matches!(outcome.unwrap(), MoveOutcome::Unsupported(_)));
    }
}
