//! `notesctl redrive-dlq`: moves dead-lettered notes back to the processing queue.
//!
//! By default SQS's own `StartMessageMoveTask`, followed with `ListMessageMoveTasks` ([`move_task`]).
//! Only where the service says it has no move tasks (an emulator that answers something other than
//! SQS), with `--manual`, or with `--max`: receive from the DLQ, send to the queue keeping body and
//! attributes, and delete from the DLQ only after the send succeeded ([`manual`]) — a crash may
//! duplicate a batch, never lose a message. Every wait ends at `--timeout`.

pub mod manual;
pub mod move_task;
#[cfg(test)]
mod testing;

use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::{Deserialize, Serialize};

use crate::aws::explain;
use crate::aws::queues::Queues;
use crate::context::{Context, Deadline, LocalArg, confirm, parse_duration};
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct RedriveArgs {
    /// Move without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Count the dead letters and show a sample; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move at most N messages (implies --manual: a move task cannot stop at a count). Without it, a
    /// manual run handles at most as many messages as the DLQ held when it started.
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
    /// Times the queue may refuse a message before it is left in the DLQ and reported by id.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub refusals: u32,
    /// How long to wait for the move (30s, 15m, 1h); past it, what is still moving and exit 1.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub local: LocalArg,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    MoveTask,
    Manual,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub message_id: String,
    pub event_type: Option<String>,
    pub note_id: Option<String>,
    pub username: Option<String>,
    pub receive_count: Option<String>,
}

/// A message the processing queue kept refusing; it stays in the DLQ.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub message_id: String,
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    pub moved: u64,
    /// How many messages the queue refused (each `refused` entry), left in the DLQ.
    pub failed: u64,
    pub method: Method,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Dead letters counted before moving.
    pub found: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Sample>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub source: String,
    pub destination: String,
}

impl Report for RedriveReport {
    /// Interrupted, still running at the deadline, or a message the queue refused: a problem.
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
            if self.found == 0 {
                return write!(f, "Nothing to move.");
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
            write!(f, "; {} refused and stay in the DLQ", self.failed)?;
        }
        for r in &self.refused {
            write!(f, "\n  ✗ {}  {}: {}", r.message_id, r.code, r.reason)?;
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
        refused: Vec::new(),
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
    let deadline = Deadline::after(args.timeout);
    let tasks = move_task::MoveTasks::new(sqs, &queues).await?;
    if report.method == Method::MoveTask {
        match tasks.run(ctx, &args, &deadline, &mut report).await? {
            move_task::Outcome::Done => return Ok(report),
            move_task::Outcome::Unsupported(why) => {
                ctx.say(format!(
                    "this endpoint has no SQS move tasks ({why}); moving messages one batch at a time"
                ));
                report.method = Method::Manual;
            }
        }
    } else if let Some(task) = tasks.running().await? {
        // A move task and a manual run on one DLQ would fight over its messages.
        report.problem = Some(format!(
            "a move task is running on {} ({}); refusing to move by hand beside it. Wait for it (`notesctl queue-depth`) or cancel it with `aws sqs cancel-message-move-task --task-handle {}`",
            report.source,
            task.progress(),
            task.handle
        ));
        return Ok(report);
    }
    manual::run(ctx, sqs, &queues, &args, &deadline, &mut report).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::testing::report;
    use super::*;

    #[test]
    fn a_dry_run_on_an_empty_dlq_does_not_ask_for_another_run() {
        let mut r = report(Method::MoveTask, 0);
        r.dry_run = true;
        assert_eq!(
            r.to_string(),
            "0 dead-lettered messages in p-note-processing-dlq (dry run: nothing moved)\nNothing to move."
        );
        r.found = 2;
        assert!(
            r.to_string()
                .ends_with("Run again without --dry-run to move them to p-note-processing-queue."),
            "{r}"
        );
    }
}
