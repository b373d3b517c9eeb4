//! SQS's own move task: started once, followed until it ends or the deadline comes.
//!
//! Its two calls go out without the SDK's retries, so that an endpoint with no move tasks (an
//! emulator answering something other than SQS) is known at once, and so that a start whose answer
//! got lost is not blindly repeated: after a failure in passing, the tasks are listed first, and a
//! task this run started is followed instead of starting a second one.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::types::{ListMessageMoveTasksResultEntry, QueueAttributeName};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{RedriveArgs, RedriveReport};
use crate::aws::queues::Queues;
use crate::aws::{Failure, classify, explain};
use crate::context::{Context, Deadline};

/// Codes of a service that has no such operation.
const UNSUPPORTED_CODES: &[&str] = &[
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "UnknownOperationException",
    "NotImplemented",
];

type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<
    E,
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
>;

/// Whether the endpoint says it has no move tasks: an unsupported-operation code, a 501, or an
/// answer that is not SQS's at all.
fn unsupported<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E>) -> bool {
    classify(e) == Failure::NotAws
        || e.code().is_some_and(|c| UNSUPPORTED_CODES.contains(&c))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 501)
}

/// One task, as `ListMessageMoveTasks` shows it.
#[derive(Debug, Clone)]
pub struct Task {
    pub handle: String,
    pub status: String,
    pub moved: i64,
    pub to_move: Option<i64>,
    pub started_ms: i64,
    pub failure: Option<String>,
}

impl Task {
    fn of(t: &ListMessageMoveTasksResultEntry) -> Task {
        Task {
            handle: t.task_handle().unwrap_or_default().to_owned(),
            status: t.status().unwrap_or("RUNNING").to_owned(),
            moved: t.approximate_number_of_messages_moved(),
            to_move: t.approximate_number_of_messages_to_move(),
            started_ms: t.started_timestamp(),
            failure: t.failure_reason().map(str::to_owned),
        }
    }

    pub fn running(&self) -> bool {
        self.status == "RUNNING"
    }

    pub fn progress(&self) -> String {
        match self.to_move {
            Some(n) => format!("task {}, {} of {n} moved", self.handle, self.moved),
            None => format!("task {}, {} moved", self.handle, self.moved),
        }
    }
}

pub enum Outcome {
    Done,
    /// The endpoint has no move tasks: the manual path is the way.
    Unsupported(String),
}

enum Listed {
    Tasks(Vec<Task>),
    Unsupported(String),
}

pub struct MoveTasks<'a> {
    sqs: &'a Client,
    dlq_arn: String,
    queue_arn: String,
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

fn no_sdk_retries() -> aws_sdk_sqs::config::Builder {
    aws_sdk_sqs::config::Builder::default().retry_config(RetryConfig::disabled())
}

impl<'a> MoveTasks<'a> {
    pub async fn new(sqs: &'a Client, queues: &Queues) -> anyhow::Result<MoveTasks<'a>> {
        let (dlq_arn, queue_arn) =
            tokio::try_join!(arn_of(sqs, &queues.dlq.url), arn_of(sqs, &queues.queue.url))?;
        Ok(MoveTasks {
            sqs,
            dlq_arn,
            queue_arn,
        })
    }

    /// The DLQ's recent tasks, newest first; a failure in passing is tried again within the deadline.
    async fn list(&self, deadline: &Deadline) -> anyhow::Result<Listed> {
        let mut delay = Duration::from_millis(250);
        loop {
            let answer = self
                .sqs
                .list_message_move_tasks()
                .source_arn(&self.dlq_arn)
                .max_results(10)
                .customize()
                .config_override(no_sdk_retries())
                .send()
                .await;
            match answer {
                Ok(out) => return Ok(Listed::Tasks(out.results().iter().map(Task::of).collect())),
                Err(e) if unsupported(&e) => {
                    return Ok(Listed::Unsupported(format!(
                        "{:#}",
                        explain("ListMessageMoveTasks", &e)
                    )));
                }
                Err(e) if classify(&e).transient() && deadline.sleep(delay).await => {
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(explain("listing the DLQ's move tasks", &e)),
            }
        }
    }

    /// The task running on the DLQ now, if any (none where the endpoint has no move tasks).
    pub async fn running(&self) -> anyhow::Result<Option<Task>> {
        let deadline = Deadline::after(Duration::from_secs(60));
        Ok(match self.list(&deadline).await? {
            Listed::Tasks(tasks) => tasks.into_iter().find(Task::running),
            Listed::Unsupported(_) => None,
        })
    }

    /// Starts a task and follows it to its end, or to the deadline.
    pub async fn run(
        &self,
        ctx: &Context,
        args: &RedriveArgs,
        deadline: &Deadline,
        report: &mut RedriveReport,
    ) -> anyhow::Result<Outcome> {
        let tasks = match self.list(deadline).await? {
            Listed::Unsupported(why) => return Ok(Outcome::Unsupported(why)),
            Listed::Tasks(tasks) => tasks,
        };
        if let Some(t) = tasks.iter().find(|t| t.running()) {
            report.moved = t.moved as u64;
            report.problem = Some(format!(
                "a move task is already running on {} ({}); wait for it or cancel it with `aws sqs cancel-message-move-task --task-handle {}`",
                report.source,
                t.progress(),
                t.handle
            ));
            return Ok(Outcome::Done);
        }
        // Tasks started from now on (a little earlier, for the clocks' sake) are this run's.
        let since = notes_handlers::domain::clock::now_millis() - 5_000;
        let Some(handle) = self.start(args, deadline, since).await? else {
            return Ok(Outcome::Unsupported(
                "StartMessageMoveTask is not offered here".into(),
            ));
        };
        self.follow(ctx, &handle, since, deadline, report).await?;
        Ok(Outcome::Done)
    }

    /// The started task's handle; `None` where the endpoint has no move tasks.
    async fn start(
        &self,
        args: &RedriveArgs,
        deadline: &Deadline,
        since: i64,
    ) -> anyhow::Result<Option<String>> {
        let mut delay = Duration::from_millis(500);
        loop {
            let answer = self
                .sqs
                .start_message_move_task()
                .source_arn(&self.dlq_arn)
                .destination_arn(&self.queue_arn)
                .set_max_number_of_messages_per_second(args.max_per_second.map(|n| n as i32))
                .customize()
                .config_override(no_sdk_retries())
                .send()
                .await;
            let e = match answer {
                Ok(out) => return Ok(Some(out.task_handle.unwrap_or_default())),
                Err(e) if unsupported(&e) => return Ok(None),
                Err(e) if classify(&e).transient() => e,
                Err(e) => return Err(explain("starting the move task", &e)),
            };
            // The request may have arrived and only its answer been lost: look before starting again.
            if let Listed::Tasks(tasks) = self.list(deadline).await?
                && let Some(mine) = tasks.iter().find(|t| t.started_ms >= since)
            {
                return Ok(Some(mine.handle.clone()));
            }
            if !deadline.sleep(delay).await {
                return Err(explain("starting the move task", &e));
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Polls the task until it ends, reporting progress; at the deadline, says it is still running.
    async fn follow(
        &self,
        ctx: &Context,
        handle: &str,
        since: i64,
        deadline: &Deadline,
        report: &mut RedriveReport,
    ) -> anyhow::Result<()> {
        let bar = ctx.spinner();
        let mut delay = Duration::from_millis(500);
        let result = loop {
            let tasks = match self.list(deadline).await? {
                Listed::Tasks(tasks) => tasks,
                Listed::Unsupported(why) => {
                    break Err(anyhow::anyhow!("the move task vanished: {why}"));
                }
            };
            // A running task shows its handle; a finished one may not: then the newest of this run's.
            let task = tasks
                .iter()
                .find(|t| !handle.is_empty() && t.handle == handle)
                .or_else(|| {
                    tasks
                        .iter()
                        .find(|t| t.started_ms >= since || handle.is_empty())
                })
                .cloned();
            let Some(task) = task else {
                break Err(anyhow::anyhow!(
                    "the move task {handle} is not among the DLQ's tasks any more; check the queues with `notesctl queue-depth`"
                ));
            };
            report.moved = task.moved as u64;
            match task.status.as_str() {
                "COMPLETED" => break Ok(()),
                "FAILED" => {
                    report.problem = Some(format!(
                        "the move task failed after {} messages: {}",
                        report.moved,
                        task.failure.as_deref().unwrap_or("no reason given")
                    ));
                    break Ok(());
                }
                "CANCELLED" | "CANCELLING" => {
                    report.problem = Some(format!(
                        "the move task was cancelled after {} messages",
                        report.moved
                    ));
                    break Ok(());
                }
                _ => {}
            }
            let line = format!(
                "moving: {} of {}",
                report.moved,
                task.to_move.unwrap_or(report.found as i64)
            );
            match &bar {
                Some(b) => b.set_message(line),
                None => ctx.say(line),
            }
            if !deadline.sleep(delay).await {
                report.problem = Some(format!(
                    "the move task is still running after --timeout {} ({}): it goes on in SQS; follow it with `notesctl queue-depth`",
                    deadline.shown(),
                    task.progress()
                ));
                break Ok(());
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! The native move task, which moto lacks, on recorded SQS responses.
    use super::*;
    use crate::commands::redrive::testing::{answer, args, arns, ctx, queues, report};
    use crate::commands::redrive::{Method, RedriveReport};
    use aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput;
    use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput;
    use aws_smithy_mocks::{Rule, mock};

    fn task(status: &str, moved: i64) -> ListMessageMoveTasksResultEntry {
        let mut t = ListMessageMoveTasksResultEntry::builder()
            .task_handle("h1")
            .status(status)
            .source_arn("arn:aws:sqs:eu-west-2:1:p-note-processing-dlq")
            .approximate_number_of_messages_moved(moved)
            .approximate_number_of_messages_to_move(10)
            .started_timestamp(notes_handlers::domain::clock::now_millis());
        if status == "FAILED" {
            t = t.failure_reason("AWS.SimpleQueueService.NonExistentQueue");
        }
        t.build()
    }

    /// ListMessageMoveTasks answering these task lists in turn (the last one again after that).
    fn listed(answers: &[&[(&'static str, i64)]]) -> Rule {
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
    fn starts(handle: &'static str) -> Rule {
        mock!(Client::start_message_move_task).then_output(move || {
            StartMessageMoveTaskOutput::builder()
                .task_handle(handle)
                .build()
        })
    }

    /// Runs the move task against SQS answering by `rules` (and the queues' ARNs).
    async fn run_move_task(rules: &[&Rule]) -> (anyhow::Result<Outcome>, RedriveReport) {
        run_move_task_with(&ctx(), rules).await
    }

    async fn run_move_task_with(
        ctx: &crate::context::Context,
        rules: &[&Rule],
    ) -> (anyhow::Result<Outcome>, RedriveReport) {
        run_move_task_within(ctx, rules, Duration::from_secs(20)).await
    }

    /// As [`run_move_task_with`], waiting at most `timeout` (`--timeout`).
    async fn run_move_task_within(
        ctx: &crate::context::Context,
        rules: &[&Rule],
        timeout: Duration,
    ) -> (anyhow::Result<Outcome>, RedriveReport) {
        let arns = arns();
        let all: Vec<&Rule> = std::iter::once(&arns)
            .chain(rules.iter().copied())
            .collect();
        let q = queues(&all);
        let mut r = report(Method::MoveTask, 10);
        let tasks = MoveTasks::new(&q.sqs, &q).await.unwrap();
        let deadline = Deadline::after(timeout);
        let outcome = tasks.run(ctx, &args(), &deadline, &mut r).await;
        (outcome, r)
    }

    #[tokio::test]
    async fn move_task_runs_to_completion_with_progress() {
        // Before the start there is no task; then it runs (4, then 7 moved) and completes with 10.
        let list = listed(&[
            &[],
            &[("RUNNING", 4)],
            &[("RUNNING", 7)],
            &[("COMPLETED", 10)],
        ]);
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
        // Not --quiet, not a terminal: progress is said as plain lines, one per poll while running.
        let ctx = super::super::testing::ctx_saying();
        let (outcome, r) = run_move_task_with(&ctx, &[&list, &start]).await;
        assert!(matches!(outcome.unwrap(), Outcome::Done));
        assert_eq!(
            ctx.said()
                .iter()
                .filter(|l| l.starts_with("moving:"))
                .collect::<Vec<_>>(),
            ["moving: 4 of 10", "moving: 7 of 10"],
            "said: {:?}",
            ctx.said()
        );
        // The count is the task's last word, not a running tally of the progress lines.
        assert_eq!((r.moved, r.problem), (10, None));
        assert_eq!(list.num_calls(), 4, "polled until it completed");
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
    async fn an_endpoint_without_move_tasks_falls_back() {
        // What moto answers for an operation it lacks.
        let list = mock!(Client::list_message_move_tasks).then_http_response(|| {
            answer(
                500,
                "text/html; charset=utf-8",
                "<html><body>not yet implemented</body></html>",
            )
        });
        let (outcome, _) = run_move_task(&[&list]).await;
        assert!(matches!(outcome.unwrap(), Outcome::Unsupported(_)));

        let start = mock!(Client::start_message_move_task).then_http_response(|| {
            answer(
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#UnsupportedOperation","message":"not here"}"#,
            )
        });
        let list = listed(&[&[]]);
        let (outcome, _) = run_move_task(&[&list, &start]).await;
        assert!(matches!(outcome.unwrap(), Outcome::Unsupported(_)));
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_retried_not_taken_for_unsupported() {
        let list = mock!(Client::list_message_move_tasks)
            .sequence()
            .http_response(|| {
                answer(
                    400,
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}"#,
                )
            })
            .http_response(|| answer(503, "application/x-amz-json-1.0", "{}"))
            .output(|| ListMessageMoveTasksOutput::builder().build())
            .output(|| {
                ListMessageMoveTasksOutput::builder()
                    .results(task("COMPLETED", 10))
                    .build()
            })
            .repeatedly()
            .build();
        let start = starts("h1");
        let (outcome, r) = run_move_task(&[&list, &start]).await;
        assert!(matches!(outcome.unwrap(), Outcome::Done));
        assert_eq!((r.moved, r.problem), (10, None));
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_start_whose_answer_was_lost_is_followed_not_repeated() {
        // The start reached SQS but its answer did not come back; the task is running.
        let list = listed(&[&[], &[("RUNNING", 2)], &[("COMPLETED", 10)]]);
        let start = mock!(Client::start_message_move_task)
            .then_http_response(|| answer(500, "application/x-amz-json-1.0", "{}"));
        let (outcome, r) = run_move_task(&[&list, &start]).await;
        assert!(matches!(outcome.unwrap(), Outcome::Done));
        assert_eq!(start.num_calls(), 1, "no second task");
        assert_eq!((r.moved, r.problem), (10, None));
    }

    #[tokio::test]
    async fn a_refused_start_stops_with_the_reason() {
        let list = listed(&[&[]]);
        let start = mock!(Client::start_message_move_task).then_http_response(|| {
            answer(
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#AccessDenied","message":"not allowed"}"#,
            )
        });
        let (outcome, _) = run_move_task(&[&list, &start]).await;
        let e = format!("{:#}", outcome.err().expect("an error"));
        assert!(
            e.contains("starting the move task failed") && e.contains("AccessDenied"),
            "{e}"
        );
    }

    /// A task still RUNNING at `--timeout 1s`: the wait ends soon after the limit, the report says
    /// the task goes on in SQS and how far it got, and the run exits 1.
    #[tokio::test]
    async fn a_task_still_running_at_the_timeout_exits_1() {
        use crate::output::{Exit, Report};
        let (list, start) = (listed(&[&[], &[("RUNNING", 4)]]), starts("h1"));
        let started = std::time::Instant::now();
        let (outcome, r) =
            run_move_task_within(&ctx(), &[&list, &start], Duration::from_secs(1)).await;
        let took = started.elapsed();
        assert!(matches!(outcome.unwrap(), Outcome::Done));
        assert!(
            took < Duration::from_secs(6),
            "waited {took:?} past a 1s --timeout"
        );
        assert!(list.num_calls() >= 2, "it followed the task");
        assert_eq!(start.num_calls(), 1);
        assert_eq!(r.moved, 4);
        let problem = r.problem.clone().unwrap_or_default();
        assert!(
            problem.contains("still running after --timeout 1s") && problem.contains("queue-depth"),
            "{problem}"
        );
        assert_eq!(r.exit(), Exit::Problem);
    }
}
