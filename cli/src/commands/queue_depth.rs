//! `notesctl queue-depth`: the processing queue and its DLQ at a glance — visible, in flight, delayed
//! (and the oldest message's age where CloudWatch has it). Two concurrent calls instead of the AWS CLI's
//! two processes; `--watch` refreshes in place; `--fail-above N` gates CI.

use std::time::Duration;

use crate::aws::queues::{QueueDepth, Queues};
use crate::context::{Context, LocalArg};
use crate::output::{Exit, Output, Report, Streamed};

#[derive(Debug, Clone, clap::Args)]
pub struct QueueDepthArgs {
    /// Refresh every --interval seconds until interrupted (in place on a terminal; JSON Lines with --output json).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Exit 1 when the processing queue or the DLQ holds more than N visible messages.
    #[arg(long, value_name = "N")]
    pub fail_above: Option<u64>,
    #[command(flatten)]
    pub local: LocalArg,
}

impl Report for QueueDepth {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some())
    }
}

/// `--fail-above`: the first queue over the limit, as a sentence.
pub fn over_limit(report: &QueueDepth, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    [&report.queue, &report.dlq]
        .into_iter()
        .find(|d| d.visible > limit)
        .map(|d| {
            format!(
                "{} holds {} visible messages, above --fail-above {limit}",
                d.name, d.visible
            )
        })
}

pub async fn run(ctx: &Context, args: QueueDepthArgs) -> anyhow::Result<QueueDepth> {
    let queues = find(ctx, &args).await?;
    let mut report = queues.measure().await?;
    report.problem = over_limit(&report, args.fail_above);
    Ok(report)
}

async fn find(ctx: &Context, args: &QueueDepthArgs) -> anyhow::Result<Queues> {
    let config = ctx.aws_or_local(&args.local).await?;
    Queues::find(&config, ctx.stage(), args.local.local.is_some()).await
}

/// `--watch`: a report per refresh, redrawn in place on a terminal, a line each elsewhere. Ends at
/// Ctrl-C, or with exit 1 once `--fail-above` is passed.
pub async fn watch(ctx: &Context, args: QueueDepthArgs) -> anyhow::Result<Streamed> {
    let queues = find(ctx, &args).await?;
    let lines = ctx.lines();
    let in_place =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && lines.format() == Output::Text;
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    let mut drawn_lines = 0;
    loop {
        let mut report = queues.measure().await?;
        report.problem = over_limit(&report, args.fail_above);
        if in_place && drawn_lines > 0 {
            // Move up and clear what the previous refresh drew.
            print!("\x1b[{drawn_lines}A\x1b[J");
        }
        if !lines.write(&report) {
            return Ok(Streamed(Exit::Ok));
        }
        drawn_lines = report.to_string().lines().count();
        if report.problem.is_some() {
            return Ok(Streamed(Exit::Problem));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Streamed(Exit::Ok)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::queues::Depth;

    fn d(name: &str, visible: u64) -> Depth {
        Depth {
            name: name.into(),
            visible,
            in_flight: 0,
            delayed: 0,
            oldest_age_seconds: None,
        }
    }

    #[test]
    fn fail_above_names_the_queue() {
        let r = QueueDepth {
            queue: d("q", 5),
            dlq: d("dlq", 1),
            problem: None,
        };
        assert_eq!(over_limit(&r, None), None);
        assert_eq!(over_limit(&r, Some(5)), None);
        assert!(over_limit(&r, Some(4)).unwrap().starts_with("q holds 5"));
        assert!(over_limit(&r, Some(0)).unwrap().starts_with("q holds"));
        let r = QueueDepth {
            queue: d("q", 0),
            dlq: d("dlq", 2),
            problem: None,
        };
        assert!(over_limit(&r, Some(1)).unwrap().starts_with("dlq holds 2"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["queue"],
            serde_json::json!({"name":"q","visible":0,"inFlight":0,"delayed":0})
        );
    }
}
