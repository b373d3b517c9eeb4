//! `notesctl metrics [--local]`: how the app is doing, as the watch list of docs/EVENT_FLOW.md — per
//! function invocations, errors, throttles and duration; the processing queue and its DLQ; the bus's
//! rules; the WebSocket API; and the app's own metrics — each a row with its current value and a
//! sparkline over `--since`, rows past their threshold marked. On a stage the series come from
//! CloudWatch (`GetMetricData`, paged); with `--local` from `notesctl dev`'s counters, sampled every
//! ten seconds. `--watch` redraws in place; `--output json` gives the series.

pub mod aws;
mod local;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::{Context, LocalArg, parse_duration};
use crate::output::{Exit, Output, Report, Streamed};

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub local: LocalArg,
    /// The window the series cover (3h, 30m, 48h).
    #[arg(long, default_value = "3h", value_parser = parse_duration)]
    pub since: Duration,
    /// One point per PERIOD (1m, 5m) or `auto`: at most 60 points over the window.
    #[arg(long, default_value = "auto", value_name = "PERIOD")]
    pub period: String,
    /// Redraw every period (at least every 10 s) until Ctrl-C; JSON Lines with --output json.
    #[arg(long)]
    pub watch: bool,
}

/// One value of a series: when (epoch seconds, the period's start) and what.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// One row: a metric of one thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Row {
    /// functions, queue, bus, websocket or app.
    pub area: String,
    pub label: String,
    /// Count, Milliseconds, Seconds.
    pub unit: String,
    /// The newest point's value (none: no data in the window).
    pub current: Option<f64>,
    /// The row is marked when its newest value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub over: bool,
    pub points: Vec<Point>,
}

impl Row {
    fn new(
        area: &str,
        label: String,
        unit: &str,
        threshold: Option<f64>,
        points: Vec<Point>,
    ) -> Row {
        let current = points.last().map(|p| p.v);
        Row {
            area: area.to_owned(),
            label,
            unit: unit.to_owned(),
            current,
            threshold,
            over: matches!((current, threshold), (Some(c), Some(t)) if c > t),
            points,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsReport {
    pub stage: String,
    /// `cloudwatch` or `dev`.
    pub source: String,
    pub since_seconds: u64,
    pub period_seconds: u64,
    pub rows: Vec<Row>,
    /// What could not be shown, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Sparklines (a terminal) or plain numbers.
    #[serde(skip)]
    pub sparklines: bool,
}

impl Report for MetricsReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.rows.iter().any(|r| r.over))
    }
}

/// Unicode blocks, lowest to highest.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The values as a sparkline, scaled from 0 (or the lowest value, if below) to the highest.
pub fn sparkline(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let min = values.iter().copied().fold(0.0_f64, f64::min);
    values
        .iter()
        .map(|v| {
            if max <= min {
                BLOCKS[0]
            } else {
                let i = ((v - min) / (max - min) * (BLOCKS.len() - 1) as f64).round() as usize;
                BLOCKS[i.min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    match unit {
        "Milliseconds" => format!("{} ms", number(v)),
        "Seconds" => format!("{} s", number(v)),
        _ => number(v),
    }
}

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of stage {} over the last {}, one point per {}",
            if self.source == "dev" {
                "notesctl dev"
            } else {
                "CloudWatch"
            },
            self.stage,
            crate::context::format_duration(Duration::from_secs(self.since_seconds)),
            crate::context::format_duration(Duration::from_secs(self.period_seconds)),
        )?;
        let mut area = "";
        for r in &self.rows {
            if r.area != area {
                area = &r.area;
                writeln!(f, "{}", area.to_uppercase())?;
            }
            let current = r
                .current
                .map_or_else(|| "–".to_owned(), |v| with_unit(v, &r.unit));
            let values: Vec<f64> = r.points.iter().map(|p| p.v).collect();
            let series = if self.sparklines {
                sparkline(&values)
            } else {
                values
                    .iter()
                    .map(|v| number(*v))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mark = match (r.over, r.threshold) {
                (true, Some(t)) => format!("  ◀ over {}", number(t)),
                _ => String::new(),
            };
            writeln!(f, "  {:<40} {current:>10}  {series}{mark}", r.label)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// One line per area, for `status`: each area's counts summed over the window, and the rows past
/// their threshold named.
pub fn summary(report: &MetricsReport) -> Vec<String> {
    let total = |area: &str, matches: &dyn Fn(&str) -> bool| -> f64 {
        report
            .rows
            .iter()
            .filter(|r| r.area == area && matches(&r.label))
            .flat_map(|r| r.points.iter().map(|p| p.v))
            .fold(0.0, |a, b| a + b)
    };
    let ends = |suffix: &'static str| move |l: &str| l.ends_with(suffix);
    let is = |name: &'static str| move |l: &str| l == name;
    let n = |v: f64| number(v);
    let areas: [(&str, String); 5] = [
        (
            "functions",
            format!(
                "{} invocations, {} errors, {} throttles",
                n(total("functions", &ends(" invocations"))),
                n(total("functions", &ends(" errors"))),
                n(total("functions", &ends(" throttles")))
            ),
        ),
        (
            "queue",
            format!(
                "{} sent, {} received, {} deleted",
                n(total("queue", &is("sent"))),
                n(total("queue", &is("received"))),
                n(total("queue", &is("deleted")))
            ),
        ),
        (
            "bus",
            format!(
                "{} matched, {} failed invocations",
                n(total("bus", &ends(" matched"))),
                n(total("bus", &ends(" failed invocations")))
            ),
        ),
        (
            "websocket",
            format!(
                "{} messages, {} connects",
                n(total("websocket", &is("messages"))),
                n(total("websocket", &is("connects")))
            ),
        ),
        (
            "app",
            format!(
                "{} notes published, {} saved, {} failed",
                n(total("app", &is("notes published"))),
                n(total("app", &is("notes saved"))),
                n(total("app", &|l: &str| l.starts_with("notes failed")))
            ),
        ),
    ];
    areas
        .into_iter()
        .filter(|(area, _)| report.rows.iter().any(|r| r.area == *area))
        .map(|(area, line)| {
            let over: Vec<&str> = report
                .rows
                .iter()
                .filter(|r| r.area == area && r.over)
                .map(|r| r.label.as_str())
                .collect();
            if over.is_empty() {
                format!("{area}: {line}")
            } else {
                format!("{area}: {line} — past threshold: {}", over.join(", "))
            }
        })
        .collect()
}

/// The period: as given, or the smallest of CloudWatch's usual ones giving at most 60 points.
pub fn period_for(given: &str, since: Duration, floor: Duration) -> anyhow::Result<Duration> {
    if given != "auto" {
        let p = parse_duration(given).map_err(|e| anyhow::anyhow!("--period {given}: {e}"))?;
        anyhow::ensure!(
            p >= floor,
            "--period {given} is shorter than the finest this source keeps ({}s)",
            floor.as_secs()
        );
        return Ok(p);
    }
    let candidates = [10, 60, 300, 900, 3600, 21_600, 86_400];
    let p = candidates
        .into_iter()
        .map(Duration::from_secs)
        .filter(|p| *p >= floor)
        .find(|p| since.as_secs() / p.as_secs() <= 60)
        .unwrap_or(Duration::from_secs(86_400));
    Ok(p)
}

async fn measure(ctx: &Context, args: &MetricsArgs) -> anyhow::Result<MetricsReport> {
    let mut report = match &args.local.local {
        Some(_) => local::measure(ctx, args).await?,
        None => aws::measure(ctx, args).await?,
    };
    report.sparklines = std::io::IsTerminal::is_terminal(&std::io::stdout());
    Ok(report)
}

pub async fn run(ctx: &Context, args: MetricsArgs) -> anyhow::Result<MetricsReport> {
    measure(ctx, &args).await
}

/// `--watch`: the report again every period (at least every 10 s), redrawn in place on a terminal.
pub async fn watch(ctx: &Context, args: MetricsArgs) -> anyhow::Result<Streamed> {
    let lines = ctx.lines();
    let in_place =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && lines.format() == Output::Text;
    let mut drawn = 0;
    loop {
        let report = measure(ctx, &args).await?;
        if in_place && drawn > 0 {
            print!("\x1b[{drawn}A\x1b[J");
        }
        if !lines.write(&report) {
            return Ok(Streamed(Exit::Ok));
        }
        drawn = report.to_string().lines().count();
        let every = Duration::from_secs(report.period_seconds.clamp(10, 300));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Streamed(Exit::Ok)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_from_zero_to_the_highest_value() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0, 8.0]), "▁▂▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
        assert_eq!(sparkline(&[5.0, 5.0]), "██");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn the_period_gives_at_most_sixty_points() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let p = |since, floor| period_for("auto", since, Duration::from_secs(floor)).unwrap();
        assert_eq!(p(h(3), 60), Duration::from_secs(300));
        assert_eq!(p(h(1), 60), Duration::from_secs(60));
        assert_eq!(p(Duration::from_secs(600), 10), Duration::from_secs(10));
        assert_eq!(p(h(48), 60), Duration::from_secs(3600));
        assert_eq!(
            period_for("5m", h(3), Duration::from_secs(60)).unwrap(),
            Duration::from_secs(300)
        );
        assert!(period_for("1s", h(3), Duration::from_secs(60)).is_err());
    }

    #[test]
    fn rows_past_their_threshold_are_marked_and_drawn() {
        let pts = |vs: &[f64]| {
            vs.iter()
                .enumerate()
                .map(|(i, v)| Point {
                    t: i as i64 * 60,
                    v: *v,
                })
                .collect::<Vec<_>>()
        };
        let report = MetricsReport {
            stage: "prod".into(),
            source: "cloudwatch".into(),
            since_seconds: 3600,
            period_seconds: 60,
            rows: vec![
                Row::new(
                    "functions",
                    "notes-save errors".into(),
                    "Count",
                    Some(0.0),
                    pts(&[0.0, 0.0, 3.0]),
                ),
                Row::new(
                    "functions",
                    "notes-save invocations".into(),
                    "Count",
                    None,
                    pts(&[1.0, 8.0, 4.0]),
                ),
                Row::new(
                    "queue",
                    "oldest message age".into(),
                    "Seconds",
                    Some(300.0),
                    vec![],
                ),
            ],
            notes: vec![],
            sparklines: true,
        };
        assert!(report.rows[0].over && !report.rows[1].over && !report.rows[2].over);
        assert_eq!(report.exit(), Exit::Problem);
        let text = report.to_string();
        assert!(
            text.contains("CloudWatch of stage prod over the last 1h"),
            "{text}"
        );
        assert!(
            text.contains("FUNCTIONS\n") && text.contains("QUEUE\n"),
            "{text}"
        );
        assert!(text.contains("▁▁█  ◀ over 0"), "{text}");
        assert!(
            text.contains("▂█▅"),
            "from 0, not from the lowest value: {text}"
        );
        assert!(text.contains("–"), "no data: {text}");
        assert_eq!(
            summary(&report),
            [
                "functions: 13 invocations, 3 errors, 0 throttles — past threshold: notes-save errors",
                "queue: 0 sent, 0 received, 0 deleted",
            ]
        );
        let plain = MetricsReport {
            sparklines: false,
            ..report
        };
        assert!(plain.to_string().contains("1 8 4"), "{plain}");
    }
}
