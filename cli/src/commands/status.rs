//! `notesctl status`: one screen — stacks, queue depths, a line per area of the last 15 minutes'
//! metrics (as `notesctl metrics` reads them) and alarm states. Exit 1 if a stack failed
//! or an alarm fires. `--local`: the same screen for `notesctl dev` — one stack, "dev", its queues
//! and its counters (it has no alarms).

use std::fmt;

use aws_sdk_cloudformation::Client;
use serde::{Deserialize, Serialize};

use crate::aws::alarms::{AlarmState, alarm_specs, states};
use crate::aws::queues::{QueueDepth, Queues};
use crate::aws::stacks;
use crate::context::{Context, LocalArg};
use crate::names;
use crate::output::{Exit, Report};

/// What `status` shows for a stack that does not exist.
pub const NOT_DEPLOYED: &str = "NOT_DEPLOYED";

/// What `status --local` shows for `notesctl dev`, its one "stack".
pub const RUNNING: &str = "RUNNING";

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub local: LocalArg,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StackState {
    pub name: String,
    pub status: String,
}

impl StackState {
    /// A stack a failed create, update or delete left behind.
    pub fn failed(&self) -> bool {
        self.status.contains("FAILED") || self.status.contains("ROLLBACK")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusReport {
    /// `notesctl dev` rather than a deployed stage (`--local`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    pub stacks: Vec<StackState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<QueueDepth>,
    /// `{stage}-websocket-notify-dlq`: real-time updates the notify rule could not deliver, or
    /// notify's invocations that failed past their retries (none where the websocket stack is not
    /// deployed, and on `dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_dlq: Option<crate::aws::queues::Depth>,
    pub alarms: Vec<AlarmState>,
    /// One line per area from the last 15 minutes of CloudWatch metrics (`notesctl metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report for StatusReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(
            self.stacks.iter().any(StackState::failed)
                || self.alarms.iter().any(AlarmState::firing),
        )
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "STACKS")?;
        for s in &self.stacks {
            writeln!(f, "  {:<34} {}", s.name, s.status)?;
        }
        if let Some(q) = &self.queues {
            writeln!(f, "QUEUES")?;
            for line in q.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
            if let Some(n) = &self.notify_dlq {
                writeln!(f, "  {n}")?;
            }
        }
        if !self.metrics.is_empty() {
            writeln!(f, "LAST 15 MINUTES")?;
            for line in &self.metrics {
                writeln!(f, "  {line}")?;
            }
        }
        // dev has no alarms; a note says where to look instead.
        if !self.local {
            writeln!(f, "ALARMS")?;
            if self.alarms.is_empty() {
                writeln!(f, "  none (create them with `notesctl alarms`)")?;
            }
        }
        for a in &self.alarms {
            writeln!(f, "  {:<45} {}", a.name, a.state)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

impl StatusReport {
    fn empty(local: bool) -> StatusReport {
        StatusReport {
            local,
            stacks: Vec::new(),
            queues: None,
            notify_dlq: None,
            alarms: Vec::new(),
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The processing queue and its DLQ (a note instead when they cannot be read).
    async fn measure_queues(&mut self, config: &aws_config::SdkConfig, stage: &str, local: bool) {
        let measured = match Queues::find(config, stage, local).await {
            Ok(q) => q.measure().await,
            Err(e) => Err(e),
        };
        match measured {
            Ok(m) => self.queues = Some(m),
            Err(e) => self.notes.push(format!("queues: {e:#}")),
        }
    }
}

/// The last 15 minutes, one point per 5 minutes: the window of the screen's metric lines.
fn metrics_window() -> crate::commands::metrics::MetricsArgs {
    crate::commands::metrics::MetricsArgs {
        local: LocalArg::default(),
        since: std::time::Duration::from_secs(15 * 60),
        period: "5m".into(),
        watch: false,
    }
}

pub async fn run(ctx: &Context, args: StatusArgs) -> anyhow::Result<StatusReport> {
    match args.local.local {
        Some(_) => local(ctx, args.local).await,
        None => deployed(ctx).await,
    }
}

/// `notesctl dev`: one stack, "dev", running; its queues over its SQS API; its counters.
async fn local(ctx: &Context, local: LocalArg) -> anyhow::Result<StatusReport> {
    let config = ctx.aws_or_local(&local).await?;
    let mut report = StatusReport::empty(true);
    report.stacks.push(StackState {
        name: format!(
            "notesctl dev at {}",
            local.local.as_deref().unwrap_or_default()
        ),
        status: RUNNING.into(),
    });
    report.measure_queues(&config, ctx.stage(), true).await;
    let window = crate::commands::metrics::MetricsArgs {
        local,
        ..metrics_window()
    };
    match crate::commands::metrics::run(ctx, window).await {
        Ok(m) => report.metrics = crate::commands::metrics::summary(&m),
        Err(e) => report.notes.push(format!("metrics: {e:#}")),
    }
    report
        .notes
        .push("notesctl dev has no alarms: `notesctl doctor --local` checks the runbooks".into());
    dead_letters(ctx, &mut report, true);
    Ok(report)
}

async fn deployed(ctx: &Context) -> anyhow::Result<StatusReport> {
    let config = ctx.aws().await?;
    let cfn = Client::new(&config);
    let mut report = StatusReport::empty(false);
    for short in stacks::STACKS {
        let name = stacks::stack_name(ctx.stage(), short);
        let status = stacks::describe(&cfn, &name)
            .await?
            .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
            .unwrap_or_else(|| NOT_DEPLOYED.into());
        report.stacks.push(StackState { name, status });
    }
    report.measure_queues(&config, ctx.stage(), false).await;
    match crate::aws::queues::depth_of(
        &aws_sdk_sqs::Client::new(&config),
        &names::notify_dlq(ctx.stage()),
    )
    .await
    {
        Ok(d) => report.notify_dlq = d,
        Err(e) => report.notes.push(format!("notify DLQ: {e:#}")),
    }
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let window = metrics_window();
    let period = std::time::Duration::from_secs(300);
    match crate::commands::metrics::aws::collect(&cw, &cfn, ctx.stage(), window.since, period).await
    {
        Ok(m) => report.metrics = crate::commands::metrics::summary(&m),
        Err(e) => report.notes.push(format!("metrics: {e:#}")),
    }
    let names: Vec<String> = alarm_specs(ctx.stage(), crate::aws::alarms::DEFAULT_QUEUE_DEPTH)
        .into_iter()
        .map(|s| s.name)
        .collect();
    match states(&cw, &names).await {
        Ok(found) => report.alarms = found,
        Err(e) => report.notes.push(format!("alarms: {e:#}")),
    }
    dead_letters(ctx, &mut report, false);
    Ok(report)
}

fn dead_letters(ctx: &Context, report: &mut StatusReport, local: bool) {
    if let Some(n) = report.notify_dlq.as_ref().filter(|n| n.visible > 0) {
        report.notes.push(format!(
            "{} holds {} real-time updates that were not delivered: `notesctl doctor` says why",
            n.name, n.visible
        ));
    }
    if report.queues.as_ref().is_some_and(|q| q.dlq.visible > 0) {
        let local = if local { " --local" } else { "" };
        report.notes.push(format!(
            "{} holds dead letters: `notesctl redrive-dlq{local} --dry-run`",
            names::dlq(ctx.stage())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::queues::Depth;

    fn depth(name: &str, visible: u64, in_flight: u64, oldest: Option<u64>) -> Depth {
        Depth {
            name: name.into(),
            visible,
            in_flight,
            delayed: 0,
            oldest_age_seconds: oldest,
        }
    }

    fn report(dlq_alarm: &str) -> StatusReport {
        StatusReport {
            local: false,
            stacks: vec![
                StackState {
                    name: "notes-prod-data".into(),
                    status: "UPDATE_COMPLETE".into(),
                },
                StackState {
                    name: "notes-prod-frontend".into(),
                    status: NOT_DEPLOYED.into(),
                },
            ],
            notify_dlq: Some(depth("prod-websocket-notify-dlq", 1, 0, None)),
            queues: Some(QueueDepth {
                queue: depth("prod-note-processing-queue", 12, 3, Some(41)),
                dlq: depth("prod-note-processing-dlq", 2, 0, Some(3600)),
                problem: None,
            }),
            alarms: vec![
                AlarmState {
                    name: "prod-notes-queue-depth-high".into(),
                    state: "OK".into(),
                    reason: None,
                },
                AlarmState {
                    name: "prod-notes-dlq-messages".into(),
                    state: dlq_alarm.into(),
                    reason: Some("Threshold Crossed".into()),
                },
            ],
            metrics: vec![
                "functions: 40 invocations, 0 errors, 0 throttles".into(),
                "app: 12 notes published, 12 saved, 0 failed".into(),
            ],
            notes: vec![
                "prod-note-processing-dlq holds dead letters: `notesctl redrive-dlq --dry-run`"
                    .into(),
            ],
        }
    }

    /// The human screen, whole: what a person reads in a terminal.
    #[test]
    fn the_screen_shows_stacks_queues_alarms_and_what_to_do() {
        let screen = report("ALARM").to_string();
        let expected = "\
STACKS
  notes-prod-data                    UPDATE_COMPLETE
  notes-prod-frontend                NOT_DEPLOYED
QUEUES
  QUEUE                                      VISIBLE IN FLIGHT   DELAYED    OLDEST
  prod-note-processing-queue                      12         3         0       41s
  prod-note-processing-dlq                         2         0         0     3600s
  prod-websocket-notify-dlq                        1         0         0         -
LAST 15 MINUTES
  functions: 40 invocations, 0 errors, 0 throttles
  app: 12 notes published, 12 saved, 0 failed
ALARMS
  prod-notes-queue-depth-high                   OK
  prod-notes-dlq-messages                       ALARM
note: prod-note-processing-dlq holds dead letters: `notesctl redrive-dlq --dry-run`
";
        assert_eq!(screen, expected, "\n{screen}");
    }

    #[test]
    fn a_firing_alarm_or_a_failed_stack_is_exit_1_and_nothing_else_is() {
        assert_eq!(report("ALARM").exit(), Exit::Problem);
        assert_eq!(
            report("OK").exit(),
            Exit::Ok,
            "NOT_DEPLOYED is not a failure"
        );
        assert_eq!(report("INSUFFICIENT_DATA").exit(), Exit::Ok);
        let mut rolled_back = report("OK");
        rolled_back.stacks[0].status = "UPDATE_ROLLBACK_COMPLETE".into();
        assert_eq!(rolled_back.exit(), Exit::Problem);
    }
}
