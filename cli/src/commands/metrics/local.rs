//! The rows of `notesctl dev`, from its counters: dev samples them every ten seconds, and each point
//! here is what a counter grew by over one period (or, for run times and latency, the mean over it).

use std::time::Duration;

use notes_handlers::HandlerName;
use notes_handlers::metering::{Counts, Tally};

use super::{MetricsArgs, MetricsReport, Point, Row, period_for};
use crate::app_client::{Api, endpoints, tls_config};
use crate::context::Context;

/// How a row reads a counter over a period.
#[derive(Debug, Clone, Copy)]
enum Read {
    Calls,
    Items,
    /// Mean of the bytes (microseconds) per call, in milliseconds.
    MeanMs,
}

struct LocalSpec {
    area: &'static str,
    label: String,
    counter: String,
    read: Read,
    unit: &'static str,
    threshold: Option<f64>,
}

fn spec(
    area: &'static str,
    label: impl Into<String>,
    counter: impl Into<String>,
    read: Read,
    threshold: Option<f64>,
) -> LocalSpec {
    LocalSpec {
        area,
        label: label.into(),
        counter: counter.into(),
        read,
        unit: match read {
            Read::MeanMs => "Milliseconds",
            _ => "Count",
        },
        threshold,
    }
}

/// The same watch list as on AWS, as far as dev counts it (its queue depth: `queue-depth --local`).
fn specs() -> Vec<LocalSpec> {
    let mut out = Vec::new();
    for &h in HandlerName::ALL {
        let f = format!("function.{h}");
        out.push(spec(
            "functions",
            format!("{h} invocations"),
            &f,
            Read::Calls,
            None,
        ));
        out.push(spec(
            "functions",
            format!("{h} errors"),
            format!("{f}.errors"),
            Read::Calls,
            Some(0.0),
        ));
        out.push(spec(
            "functions",
            format!("{h} duration mean"),
            &f,
            Read::MeanMs,
            None,
        ));
    }
    out.push(spec("queue", "sent", "queue.send", Read::Items, None));
    out.push(spec(
        "queue",
        "received",
        "queue.receive",
        Read::Items,
        None,
    ));
    out.push(spec(
        "queue",
        "deleted",
        "queue.delete_batch",
        Read::Items,
        None,
    ));
    out.push(spec("bus", "events put", "bus.publish", Read::Items, None));
    out.push(spec(
        "bus",
        "notify invocations by the rule",
        "bus.invoke_function",
        Read::Calls,
        None,
    ));
    out.push(spec(
        "websocket",
        "messages",
        "notifier.post",
        Read::Calls,
        None,
    ));
    out.push(spec(
        "websocket",
        "connects",
        "connections.register",
        Read::Calls,
        None,
    ));
    out.push(spec(
        "app",
        "notes published",
        "metric.NotesPublished",
        Read::Items,
        None,
    ));
    out.push(spec(
        "app",
        "notes saved",
        "metric.NotesSaved",
        Read::Items,
        None,
    ));
    for reason in ["store", "unreadable"] {
        out.push(spec(
            "app",
            format!("notes failed ({reason})"),
            format!("metric.NotesFailed.{reason}"),
            Read::Calls,
            Some(0.0),
        ));
    }
    out.push(spec(
        "app",
        "save latency mean",
        "metric.SaveLatency",
        Read::MeanMs,
        None,
    ));
    out.push(spec(
        "app",
        "connections reached",
        "metric.ConnectionsReached",
        Read::Items,
        None,
    ));
    out.push(spec(
        "app",
        "stale connections removed",
        "metric.StaleConnectionsRemoved",
        Read::Items,
        None,
    ));
    out
}

/// The counters as they stood at `t`: the last sample taken at or before it.
fn at(samples: &[(i64, Counts)], t: i64) -> Option<&Counts> {
    samples.iter().rev().find(|(s, _)| *s <= t).map(|(_, c)| c)
}

fn grown(before: Tally, after: Tally, read: Read) -> Option<f64> {
    let calls = after.calls.saturating_sub(before.calls);
    match read {
        Read::Calls => Some(calls as f64),
        Read::Items => Some(after.items.saturating_sub(before.items) as f64),
        Read::MeanMs if calls == 0 => None,
        Read::MeanMs => {
            Some(after.bytes.saturating_sub(before.bytes) as f64 / calls as f64 / 1000.0)
        }
    }
}

/// One point per period from `start` to the newest sample: the growth between the counters at the
/// period's start and end. Periods before dev's first sample have no point.
fn series(
    samples: &[(i64, Counts)],
    start: i64,
    period: i64,
    counter: &str,
    read: Read,
) -> Vec<Point> {
    let (Some((first, born)), Some(&(last, _))) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut t = start;
    while t < last {
        let end = (t + period).min(last);
        // The period dev started in grows from its first sample.
        let from = at(samples, t).or((end >= *first).then_some(born));
        if let (Some(a), Some(b)) = (from, at(samples, end))
            && let Some(v) = grown(a.get(counter), b.get(counter), read)
        {
            out.push(Point { t, v });
        }
        t += period;
    }
    out
}

pub async fn measure(ctx: &Context, args: &MetricsArgs) -> anyhow::Result<MetricsReport> {
    let period = period_for(&args.period, args.since, super::super::dev::history::EVERY)?;
    let target = endpoints(ctx, &args.local).await?;
    let api = Api::new(&target.api, &*tls_config(target.secure())?);
    let now = notes_handlers::domain::clock::now_millis() / 1000;
    let start = now - args.since.as_secs() as i64;
    // One sample before the window, so its first period has a start to grow from.
    let samples = api
        .dev_counter_history(start - period.as_secs() as i64)
        .await?;
    let mut notes =
        vec!["the queue's depth and the DLQ: `notesctl queue-depth --local`".to_owned()];
    if let Some(&(first, _)) = samples.first()
        && first > start
    {
        notes.push(format!(
            "dev keeps its counters since it started, and three hours at most: the series begin {} ago",
            crate::context::format_duration(Duration::from_secs((now - first).max(0) as u64))
        ));
    }
    Ok(MetricsReport {
        stage: ctx.stage().to_owned(),
        source: "dev".into(),
        since_seconds: args.since.as_secs(),
        period_seconds: period.as_secs(),
        rows: specs()
            .into_iter()
            .map(|s| {
                let points = series(&samples, start, period.as_secs() as i64, &s.counter, s.read);
                Row::new(s.area, s.label, s.unit, s.threshold, points)
            })
            .collect(),
        notes,
        sparklines: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(calls: u64, bytes: u64) -> Counts {
        let mut c = Counts::default();
        c.0.insert(
            "function.notes-save".into(),
            Tally {
                calls,
                items: calls,
                bytes,
            },
        );
        c
    }

    #[test]
    fn each_point_is_what_the_counter_grew_by_in_its_period() {
        // Samples every 10 s; periods of 20 s from t = 0.
        let samples = vec![
            (10, counts(0, 0)),
            (20, counts(2, 4_000)),
            (30, counts(5, 10_000)),
            (40, counts(5, 10_000)),
            (45, counts(6, 13_000)),
        ];
        let calls = series(&samples, 0, 20, "function.notes-save", Read::Calls);
        // [0, 20): from dev's first sample (t = 10) to 20; [20, 40): 5 - 2; [40, 45]: 6 - 5.
        assert_eq!(
            calls,
            [
                Point { t: 0, v: 2.0 },
                Point { t: 20, v: 3.0 },
                Point { t: 40, v: 1.0 }
            ]
        );
        let mean = series(&samples, 0, 20, "function.notes-save", Read::MeanMs);
        assert_eq!(
            mean,
            [
                Point { t: 0, v: 2.0 },
                Point { t: 20, v: 2.0 },
                Point { t: 40, v: 3.0 }
            ]
        );
        assert!(series(&samples, 0, 20, "nothing", Read::MeanMs).is_empty());
        assert_eq!(series(&samples, 0, 20, "nothing", Read::Calls).len(), 3);
        // A window that starts after dev: only the periods inside it.
        assert_eq!(
            series(&samples, 30, 20, "function.notes-save", Read::Calls),
            [Point { t: 30, v: 1.0 }]
        );
    }
}
