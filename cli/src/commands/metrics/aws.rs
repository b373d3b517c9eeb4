//! The rows of a deployed stage, from CloudWatch: one `GetMetricData` query per row, 500 to a call,
//! paged by its token.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use notes_handlers::HandlerName;

use super::{MetricsArgs, MetricsReport, Point, Row, period_for};
use crate::aws::{explain, stacks};
use crate::context::Context;
use crate::names;

/// What one row asks CloudWatch for.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    pub area: &'static str,
    pub label: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub stat: &'static str,
    pub unit: &'static str,
    pub threshold: Option<f64>,
}

/// A row of a table below: label, metric, statistic, unit, threshold.
type Line = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<f64>,
);

/// Each function's rows (AWS/Lambda).
const FUNCTION_ROWS: [Line; 5] = [
    ("invocations", "Invocations", "Sum", "Count", None),
    ("errors", "Errors", "Sum", "Count", Some(0.0)),
    ("throttles", "Throttles", "Sum", "Count", Some(0.0)),
    ("duration p50", "Duration", "p50", "Milliseconds", None),
    ("duration p99", "Duration", "p99", "Milliseconds", None),
];

/// The processing queue's rows (AWS/SQS); its depth's threshold is the alarm's, set apart.
const QUEUE_ROWS: [Line; 5] = [
    ("sent", "NumberOfMessagesSent", "Sum", "Count", None),
    ("received", "NumberOfMessagesReceived", "Sum", "Count", None),
    ("deleted", "NumberOfMessagesDeleted", "Sum", "Count", None),
    (
        "visible",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        "Count",
        None,
    ),
    (
        "oldest message age",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
        "Seconds",
        None,
    ),
];

/// The DLQ's rows: any message in it is one too many.
const DLQ_ROWS: [Line; 5] = [
    ("DLQ sent", "NumberOfMessagesSent", "Sum", "Count", None),
    (
        "DLQ received",
        "NumberOfMessagesReceived",
        "Sum",
        "Count",
        None,
    ),
    (
        "DLQ deleted",
        "NumberOfMessagesDeleted",
        "Sum",
        "Count",
        None,
    ),
    (
        "DLQ visible",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        "Count",
        Some(0.0),
    ),
    (
        "DLQ oldest message age",
        "ApproximateAgeOfOldestMessage",
        "Maximum",
        "Seconds",
        None,
    ),
];

/// Each rule's rows (AWS/Events).
const RULE_ROWS: [Line; 2] = [
    ("matched", "MatchedEvents", "Sum", "Count", None),
    (
        "failed invocations",
        "FailedInvocations",
        "Sum",
        "Count",
        Some(0.0),
    ),
];

/// The WebSocket API's rows (AWS/ApiGateway).
const WEBSOCKET_ROWS: [Line; 2] = [
    ("messages", "MessageCount", "Sum", "Count", None),
    ("connects", "ConnectCount", "Sum", "Count", None),
];

/// The app's own rows (NotesApp, the handlers' EMF lines); failed notes have a row per reason.
const APP_ROWS: [Line; 6] = [
    ("notes published", "NotesPublished", "Sum", "Count", None),
    ("notes saved", "NotesSaved", "Sum", "Count", None),
    (
        "save latency p50",
        "SaveLatency",
        "p50",
        "Milliseconds",
        None,
    ),
    (
        "save latency p99",
        "SaveLatency",
        "p99",
        "Milliseconds",
        None,
    ),
    (
        "connections reached",
        "ConnectionsReached",
        "Sum",
        "Count",
        None,
    ),
    (
        "stale connections removed",
        "StaleConnectionsRemoved",
        "Sum",
        "Count",
        None,
    ),
];

fn rows(
    area: &'static str,
    namespace: &'static str,
    lines: &[Line],
    prefix: &str,
    dimensions: &[(&'static str, String)],
) -> impl Iterator<Item = RowSpec> {
    lines
        .iter()
        .map(move |&(label, metric, stat, unit, threshold)| RowSpec {
            area,
            label: [prefix, label]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            namespace,
            metric,
            dimensions: dimensions.to_vec(),
            stat,
            unit,
            threshold,
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// The watch list (docs/EVENT_FLOW.md) for `stage`, and the app's own metrics. Errors, throttles,
/// failed deliveries and failed notes are marked above 0; the queues as `notesctl alarms` sets them
/// (the processing queue above `queue_depth`, the DLQ and the notify DLQ at 1 or more).
pub fn specs(stage: &str, websocket_api: Option<&str>, queue_depth: f64) -> Vec<RowSpec> {
    let mut out = Vec::new();
    for &h in HandlerName::ALL {
        let dims = [("FunctionName", h.spec().function_name(stage))];
        out.extend(rows(
            "functions",
            "AWS/Lambda",
            &FUNCTION_ROWS,
            h.as_str(),
            &dims,
        ));
    }
    let queue = [("QueueName", names::queue(stage))];
    out.extend(
        rows("queue", "AWS/SQS", &QUEUE_ROWS, "", &queue).map(|mut r| {
            if r.label == "visible" {
                r.threshold = Some(queue_depth);
            }
            r
        }),
    );
    let dlq = [("QueueName", names::dlq(stage))];
    out.extend(rows("queue", "AWS/SQS", &DLQ_ROWS, "", &dlq));
    // Real-time updates the notify rule could not deliver, or notify's failed invocations.
    let notify_dlq = [("QueueName", names::notify_dlq(stage))];
    out.extend(rows(
        "queue",
        "AWS/SQS",
        &[(
            "notify DLQ visible",
            "ApproximateNumberOfMessagesVisible",
            "Maximum",
            "Count",
            Some(0.0),
        )],
        "",
        &notify_dlq,
    ));
    let bus = format!("{stage}-notes-event-bus");
    for rule in [
        format!("{stage}-note-created-to-queue"),
        format!("{stage}-note-results-to-notify"),
    ] {
        let dims = [("EventBusName", bus.clone()), ("RuleName", rule.clone())];
        out.extend(rows("bus", "AWS/Events", &RULE_ROWS, &rule, &dims));
    }
    if let Some(api) = websocket_api {
        let dims = [("ApiId", api.to_owned()), ("Stage", stage.to_owned())];
        out.extend(rows(
            "websocket",
            "AWS/ApiGateway",
            &WEBSOCKET_ROWS,
            "",
            &dims,
        ));
    }
    let app = [("Stage", stage.to_owned())];
    out.extend(rows("app", "NotesApp", &APP_ROWS[..2], "", &app));
    for reason in ["store", "unreadable"] {
        let dims = [("Stage", stage.to_owned()), ("Reason", reason.to_owned())];
        let label = format!("notes failed ({reason})");
        out.extend(rows(
            "app",
            "NotesApp",
            &[("", "NotesFailed", "Sum", "Count", Some(0.0))],
            &label,
            &dims,
        ));
    }
    out.extend(rows("app", "NotesApp", &APP_ROWS[2..], "", &app));
    out
}

/// GetMetricData takes at most this many queries a call.
const MAX_QUERIES: usize = 500;

fn query(i: usize, spec: &RowSpec, period: Duration) -> anyhow::Result<MetricDataQuery> {
    let mut metric = Metric::builder()
        .namespace(spec.namespace)
        .metric_name(spec.metric);
    for (name, value) in &spec.dimensions {
        metric = metric.dimensions(Dimension::builder().name(*name).value(value).build());
    }
    Ok(MetricDataQuery::builder()
        .id(format!("m{i}"))
        .label(&spec.label)
        .metric_stat(
            MetricStat::builder()
                .metric(metric.build())
                .period(period.as_secs() as i32)
                .stat(spec.stat)
                .build(),
        )
        .return_data(true)
        .build())
}

/// Each spec's series over `[start, end)`, oldest first.
pub async fn fetch(
    cw: &aws_sdk_cloudwatch::Client,
    specs: &[RowSpec],
    start: SystemTime,
    end: SystemTime,
    period: Duration,
) -> anyhow::Result<Vec<Vec<Point>>> {
    let mut series: HashMap<String, Vec<Point>> = HashMap::new();
    for (chunk_no, chunk) in specs.chunks(MAX_QUERIES).enumerate() {
        let queries = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| query(chunk_no * MAX_QUERIES + i, s, period))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut token: Option<String> = None;
        loop {
            let out = cw
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| explain("reading metrics from CloudWatch (GetMetricData)", &e))?;
            for r in out.metric_data_results() {
                let points = series
                    .entry(r.id().unwrap_or_default().to_owned())
                    .or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    points.push(Point { t: t.secs(), v: *v });
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    Ok((0..specs.len())
        .map(|i| {
            let mut points = series.remove(&format!("m{i}")).unwrap_or_default();
            points.sort_by_key(|p| p.t);
            points
        })
        .collect())
}

pub async fn measure(ctx: &Context, args: &MetricsArgs) -> anyhow::Result<MetricsReport> {
    let config = ctx.aws().await?;
    let period = period_for(&args.period, args.since, Duration::from_secs(60))?;
    collect(
        &aws_sdk_cloudwatch::Client::new(&config),
        &aws_sdk_cloudformation::Client::new(&config),
        ctx.stage(),
        args.since,
        period,
    )
    .await
}

/// The stage's rows over the last `since`: the WebSocket API's id from its stack, then the series.
pub async fn collect(
    cw: &aws_sdk_cloudwatch::Client,
    cfn: &aws_sdk_cloudformation::Client,
    stage: &str,
    since: Duration,
    period: Duration,
) -> anyhow::Result<MetricsReport> {
    let mut notes = Vec::new();
    let websocket = stacks::stack_name(stage, "websocket");
    let api = match stacks::outputs(cfn, &websocket).await? {
        Some(o) => o.get("WebSocketApiId").cloned(),
        None => None,
    };
    if api.is_none() {
        notes.push(format!(
            "no WebSocket rows: stack {websocket} is not deployed (or has no WebSocketApiId output)"
        ));
    }
    let specs = specs(
        stage,
        api.as_deref(),
        crate::aws::alarms::DEFAULT_QUEUE_DEPTH,
    );
    let end = SystemTime::now();
    let series = fetch(cw, &specs, end - since, end, period).await?;
    Ok(MetricsReport {
        stage: stage.to_owned(),
        source: "cloudwatch".into(),
        since_seconds: since.as_secs(),
        period_seconds: period.as_secs(),
        rows: specs
            .iter()
            .zip(series)
            .map(|(s, points)| Row::new(s.area, s.label.clone(), s.unit, s.threshold, points))
            .collect(),
        notes,
        sparklines: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_sdk_cloudwatch::types::MetricDataResult;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[test]
    fn the_watch_list_names_every_function_queue_and_rule_of_the_stage() {
        let all = specs("prod", Some("abc123"), 50.0);
        for &h in HandlerName::ALL {
            let f = format!("prod-{h}");
            for m in ["Invocations", "Errors", "Throttles", "Duration"] {
                assert!(
                    all.iter()
                        .any(|s| s.metric == m && s.dimensions == [("FunctionName", f.clone())]),
                    "{m} of {f}"
                );
            }
        }
        let dlq = all.iter().find(|s| s.label == "DLQ visible").unwrap();
        assert_eq!(
            dlq.dimensions,
            [("QueueName", "prod-note-processing-dlq".to_owned())]
        );
        assert_eq!(dlq.threshold, Some(0.0));
        let notify = all
            .iter()
            .find(|s| s.label == "notify DLQ visible")
            .unwrap();
        assert_eq!((notify.area, notify.threshold), ("queue", Some(0.0)));
        assert_eq!(
            notify.dimensions,
            [("QueueName", "prod-websocket-notify-dlq".to_owned())]
        );
        assert!(
            all.iter()
                .any(|s| s.namespace == "AWS/ApiGateway" && s.metric == "ConnectCount")
        );
        assert_eq!(all.iter().filter(|s| s.namespace == "NotesApp").count(), 8);
        assert!(
            specs("prod", None, 50.0)
                .iter()
                .all(|s| s.area != "websocket")
        );
    }

    /// Recorded answers: the series come back by id across pages, oldest first.
    #[tokio::test]
    async fn series_are_read_by_id_across_pages() {
        let first = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("m1")
                            .timestamps(DateTime::from_secs(120))
                            .values(3.0)
                            .build(),
                    )
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| {
                r.next_token() == Some("page-2") && r.metric_data_queries().len() == 2
            })
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("m1")
                            .timestamps(DateTime::from_secs(60))
                            .values(1.0)
                            .build(),
                    )
                    .metric_data_results(MetricDataResult::builder().id("m0").build())
                    .build()
            });
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&first, &second]);
        let all = specs("prod", None, 50.0);
        let two = &all[..2];
        let now = SystemTime::now();
        let series = fetch(
            &cw,
            two,
            now - Duration::from_secs(600),
            now,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(series[0], []);
        assert_eq!(
            series[1],
            [Point { t: 60, v: 1.0 }, Point { t: 120, v: 3.0 }]
        );
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    /// A scenario, seeded as CloudWatch would answer it (AWS/Lambda, AWS/SQS, AWS/Events, NotesApp):
    /// save erring, the DLQ holding a note, the notify rule failing a while ago. The rows are the
    /// stage's, the WebSocket API's from its stack, and the two still past their threshold marked.
    #[tokio::test]
    async fn a_failing_save_and_a_dead_letter_are_marked() {
        use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
        use aws_sdk_cloudformation::types::{Output, Stack, StackStatus};
        let all = specs("prod", Some("abc123"), 100.0);
        let id_of =
            |label: &str| format!("m{}", all.iter().position(|s| s.label == label).unwrap());
        let (errors, dlq, saved, failed) = (
            id_of("notes-save errors"),
            id_of("DLQ visible"),
            id_of("notes saved"),
            id_of("prod-note-results-to-notify failed invocations"),
        );
        let cw_answer = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(move || {
            let series = |id: &str, values: &[f64]| {
                let mut r = MetricDataResult::builder().id(id);
                for (i, v) in values.iter().enumerate() {
                    r = r
                        .timestamps(DateTime::from_secs(1_796_000_000 + 300 * i as i64))
                        .values(*v);
                }
                r.build()
            };
            GetMetricDataOutput::builder()
                .metric_data_results(series(&errors, &[0.0, 0.0, 2.0]))
                .metric_data_results(series(&dlq, &[0.0, 1.0, 1.0]))
                .metric_data_results(series(&saved, &[10.0, 12.0, 9.0]))
                .metric_data_results(series(&failed, &[0.0, 4.0, 0.0]))
                .build()
        });
        let stack = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .match_requests(|r| r.stack_name() == Some("prod-websocket-stack"))
            .then_output(|| {
                DescribeStacksOutput::builder()
                    .stacks(
                        Stack::builder()
                            .stack_name("prod-websocket-stack")
                            .stack_status(StackStatus::CreateComplete)
                            .creation_time(DateTime::from_secs(0))
                            .outputs(
                                Output::builder()
                                    .output_key("WebSocketApiId")
                                    .output_value("abc123")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&cw_answer]);
        let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, [&stack]);
        let report = collect(
            &cw,
            &cfn,
            "prod",
            Duration::from_secs(3 * 3600),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
        assert_eq!(report.rows.len(), all.len(), "WebSocket rows included");
        let over: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| r.over)
            .map(|r| r.label.as_str())
            .collect();
        // The rule's failures are over: the newest point is back at 0.
        assert_eq!(over, ["notes-save errors", "DLQ visible"]);
        let rule = report
            .rows
            .iter()
            .find(|r| r.label == "prod-note-results-to-notify failed invocations")
            .unwrap();
        assert_eq!((rule.area.as_str(), rule.current), ("bus", Some(0.0)));
        assert_eq!(rule.points.iter().map(|p| p.v).sum::<f64>(), 4.0);
        let saved = report
            .rows
            .iter()
            .find(|r| r.label == "notes saved")
            .unwrap();
        assert_eq!(saved.current, Some(9.0));
        assert_eq!(saved.points.len(), 3);
        assert_eq!(
            crate::output::Report::exit(&report),
            crate::output::Exit::Problem
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["periodSeconds"], 300);
        assert_eq!(json["rows"][0]["area"], "functions");
        assert!(json.get("sparklines").is_none());
        let text = MetricsReport {
            sparklines: true,
            ..report
        }
        .to_string();
        assert!(text.contains("▁▁█  ◀ over 0"), "{text}");
        assert!(text.contains("APP\n"), "{text}");
    }
}
