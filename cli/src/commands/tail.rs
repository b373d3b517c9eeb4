//! `notesctl tail FUNCTION…`: the functions' logs, interleaved by time. `--follow` uses CloudWatch
//! Logs' live tail where the service offers it, and otherwise polls `FilterLogEvents` at a sub-second
//! interval (backing off on throttling), de-duplicated by event id, picking up new log streams as they
//! appear. JSON Lines with `--output json`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

use crate::aws::{explain, is_transient};
use crate::context::{Context, LocalArg};
use crate::names;
use crate::output::{Exit, Lines, Streamed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Time, the name you typed, the message.
    Short,
    /// Full timestamp, function name, log stream, the message.
    Detailed,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Functions: short names (save, publish, notify, connect, signup, …), handler names or full names.
    #[arg(required = true, num_args = 1..)]
    pub functions: Vec<String>,
    /// How far back to start: 30s, 10m, 2h, 1d, or an ISO-8601 time.
    #[arg(long, default_value = "10m", value_parser = since_value)]
    pub since: String,
    /// Keep printing new events until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// A CloudWatch Logs filter pattern.
    #[arg(long)]
    pub filter: Option<String>,
    /// How a line looks in text output.
    #[arg(long, value_enum, default_value_t = Format::Short)]
    pub format: Format,
    #[command(flatten)]
    pub local: LocalArg,
}

/// One log event, as printed (`{"timestamp","function","stream","message"}` in JSON Lines).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Line {
    pub timestamp: String,
    pub function: String,
    pub stream: String,
    pub message: String,
    #[serde(skip)]
    pub millis: i64,
    #[serde(skip)]
    pub label: String,
    #[serde(skip)]
    pub format: Option<Format>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message.trim_end();
        match self.format.unwrap_or(Format::Short) {
            Format::Short => {
                let time = self.timestamp.get(11..23).unwrap_or(&self.timestamp);
                write!(f, "{time} {} {message}", self.label)
            }
            Format::Detailed => write!(
                f,
                "{} {} {} {message}",
                self.timestamp, self.function, self.stream
            ),
        }
    }
}

/// `--since` as clap checks it, before anything runs: its form (the time it names depends on when
/// the command starts).
fn since_value(text: &str) -> Result<String, String> {
    parse_since(text, 0)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string().trim_start_matches("--since ").to_owned())
}

/// `--since`: a duration back from `now_ms` (`90s`, `10m`, `2h`, `1d`, `1w`; a bare number is
/// minutes) or an absolute ISO-8601/RFC 3339 time. Epoch milliseconds.
pub fn parse_since(text: &str, now_ms: i64) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(at) =
        OffsetDateTime::parse(t, &Rfc3339).or_else(|_| OffsetDateTime::parse(t, &Iso8601::DEFAULT))
    {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!(
            "--since {text:?}: expected a duration like 30s, 10m, 2h, 1d, or an ISO-8601 time"
        )
    })?;
    let unit_ms = match unit {
        "" | "m" | "min" => 60_000,
        "s" | "sec" => 1_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => anyhow::bail!("--since {text:?}: unknown unit {other:?} (use s, m, h, d or w)"),
    };
    Ok(now_ms - n * unit_ms)
}

fn iso(ms: i64) -> String {
    notes_handlers::domain::clock::iso_millis(ms)
}

struct Group {
    /// What the user typed, for text output.
    label: String,
    function: String,
    name: String,
}

/// Writes a line; `false` once stdout is closed (`| head`), which ends the stream quietly.
fn emit(lines: Lines, format: Format, line: &mut Line) -> bool {
    line.format = Some(format);
    lines.write(line)
}

/// One page of `FilterLogEvents`: (event id, line) pairs and the next token.
async fn filter_page(
    client: &Client,
    group: &Group,
    start: i64,
    filter: Option<&str>,
    token: Option<String>,
) -> Result<
    (Vec<(String, Line)>, Option<String>),
    aws_sdk_cloudwatchlogs::error::SdkError<
        aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError,
    >,
> {
    let out = client
        .filter_log_events()
        .log_group_name(&group.name)
        .start_time(start)
        .set_filter_pattern(filter.map(str::to_owned))
        .set_next_token(token)
        .send()
        .await?;
    let lines = out
        .events()
        .iter()
        .map(|e| {
            let millis = e.timestamp().unwrap_or_default();
            let line = Line {
                timestamp: iso(millis),
                function: group.function.clone(),
                stream: e.log_stream_name().unwrap_or_default().to_owned(),
                message: e.message().unwrap_or_default().to_owned(),
                millis,
                label: group.label.clone(),
                format: None,
            };
            (e.event_id().unwrap_or_default().to_owned(), line)
        })
        .collect();
    Ok((lines, out.next_token))
}

/// Every event of the groups since `start`, oldest first.
async fn backlog(
    client: &Client,
    groups: &[Group],
    start: i64,
    filter: Option<&str>,
) -> anyhow::Result<Vec<(String, Line)>> {
    let fetches = groups.iter().map(|g| async move {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (lines, next) = filter_page(client, g, start, filter, token).await.map_err(|e| {
                if e.code() == Some("ResourceNotFoundException") {
                    anyhow::anyhow!("log group {} does not exist: is {} deployed (check --stage and --region)?", g.name, g.function)
                } else {
                    explain(&format!("reading {}", g.name), &e)
                }
            })?;
            all.extend(lines);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok::<_, anyhow::Error>(all),
            }
        }
    });
    let mut lines: Vec<(String, Line)> = futures::future::try_join_all(fetches)
        .await?
        .into_iter()
        .flatten()
        .collect();
    lines.sort_by(|a, b| (a.1.millis, &a.0).cmp(&(b.1.millis, &b.0)));
    Ok(lines)
}

/// Every event of one function's log group since `start` that matches `filter`, oldest first, read
/// as `tail` reads its backlog (paged, errors explained): what `doctor` counts its ERROR and WARN lines from.
pub(crate) async fn events_of(
    client: &Client,
    function: &str,
    group_name: String,
    start: i64,
    filter: &str,
) -> anyhow::Result<Vec<Line>> {
    let group = Group {
        label: function.to_owned(),
        function: function.to_owned(),
        name: group_name,
    };
    let lines = backlog(client, std::slice::from_ref(&group), start, Some(filter)).await?;
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

pub async fn run(ctx: &Context, args: TailArgs) -> anyhow::Result<Streamed> {
    // What the command line says first, then the configuration (credentials, the dev token).
    let now = notes_handlers::domain::clock::now_millis();
    let start = parse_since(&args.since, now)?;
    let config = ctx.aws_or_local(&args.local).await?;
    let lines = ctx.lines();
    let client = Client::new(&config);
    let groups: Vec<Group> = args
        .functions
        .iter()
        .map(|f| {
            let function = names::function(ctx.stage(), f);
            Group {
                label: f.clone(),
                name: names::log_group(&function),
                function,
            }
        })
        .collect();
    let filter = args.filter.as_deref();
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut cursor = start;
    for (id, mut line) in backlog(&client, &groups, start, filter).await? {
        cursor = cursor.max(line.millis);
        seen.insert(id, line.millis);
        if !emit(lines, args.format, &mut line) {
            return Ok(Streamed(Exit::Ok));
        }
    }
    if !args.follow {
        return Ok(Streamed(Exit::Ok));
    }
    if args.local.local.is_none()
        && live_tail(&client, &groups, args.filter.as_deref(), |line| {
            emit(lines, args.format, line)
        })
        .await?
    {
        return Ok(Streamed(Exit::Ok));
    }
    poll(lines, &client, &groups, &args, cursor, seen).await
}

/// Follows with StartLiveTail, giving each event to `out` until it returns false. `Ok(false)` when
/// the service (or an emulator) does not offer live tail.
async fn live_tail(
    client: &Client,
    groups: &[Group],
    filter: Option<&str>,
    mut out: impl FnMut(&mut Line) -> bool,
) -> anyhow::Result<bool> {
    let mut arns = BTreeMap::new();
    for g in groups {
        let out = match client
            .describe_log_groups()
            .log_group_name_prefix(&g.name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(_) => return Ok(false),
        };
        let Some(arn) = out
            .log_groups()
            .iter()
            .find(|lg| lg.log_group_name() == Some(g.name.as_str()))
            .and_then(|lg| lg.arn())
        else {
            return Ok(false);
        };
        arns.insert(arn.trim_end_matches(":*").to_owned(), g);
    }
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        client
            .start_live_tail()
            .set_log_group_identifiers(Some(arns.keys().cloned().collect()))
            .set_log_event_filter_pattern(filter.map(str::to_owned))
            .send(),
    )
    .await;
    let mut stream = match started {
        Ok(Ok(out)) => out.response_stream,
        Ok(Err(e)) => {
            tracing::info!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "live tail unavailable; polling instead");
            return Ok(false);
        }
        Err(_) => {
            tracing::info!("live tail did not start within 5 s; polling instead");
            return Ok(false);
        }
    };
    loop {
        let event = tokio::select! {
            e = stream.recv() => e,
            _ = tokio::signal::ctrl_c() => return Ok(true),
        };
        match event {
            Ok(Some(
                aws_sdk_cloudwatchlogs::types::StartLiveTailResponseStream::SessionUpdate(update),
            )) => {
                for e in update.session_results() {
                    let group = e.log_group_identifier().and_then(|id| {
                        arns.iter()
                            .find(|(arn, g)| id == arn.as_str() || id.ends_with(&g.name))
                            .map(|(_, g)| *g)
                    });
                    let (function, label) = group
                        .map(|g| (g.function.clone(), g.label.clone()))
                        .unwrap_or_default();
                    let mut line = Line {
                        timestamp: iso(e.timestamp().unwrap_or_default()),
                        function,
                        stream: e.log_stream_name().unwrap_or_default().to_owned(),
                        message: e.message().unwrap_or_default().to_owned(),
                        millis: e.timestamp().unwrap_or_default(),
                        label,
                        format: None,
                    };
                    if !out(&mut line) {
                        return Ok(true);
                    }
                }
            }
            Ok(Some(_)) => {}
            // Sessions end after three hours, or when the service closes them: say so.
            Ok(None) => {
                anyhow::bail!("the live tail session ended; run the command again to continue")
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "live tail failed: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ));
            }
        }
    }
}

const POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(5);
/// How long following goes on through passing failures before it stops with the last one.
const GIVE_UP: Duration = Duration::from_secs(120);
/// Events can arrive late (ingestion lag): each poll looks back this far and skips ids it has seen.
const OVERLAP_MS: i64 = 10_000;

async fn poll(
    out: Lines,
    client: &Client,
    groups: &[Group],
    args: &TailArgs,
    mut cursor: i64,
    mut seen: HashMap<String, i64>,
) -> anyhow::Result<Streamed> {
    let mut interval = POLL;
    let mut failing_since = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Streamed(Exit::Ok)),
        }
        let from = cursor - OVERLAP_MS;
        match backlog(client, groups, from, args.filter.as_deref()).await {
            Ok(lines) => {
                interval = POLL;
                failing_since = None;
                for (id, mut line) in lines {
                    if seen.contains_key(&id) {
                        continue;
                    }
                    cursor = cursor.max(line.millis);
                    seen.insert(id, line.millis);
                    if !emit(out, args.format, &mut line) {
                        return Ok(Streamed(Exit::Ok));
                    }
                }
                seen.retain(|_, ts| *ts >= cursor - 2 * OVERLAP_MS);
            }
            // Throttled, a 5xx, a dropped connection: poll more slowly, and stop only when it lasts.
            Err(e) if is_transient(&e) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > GIVE_UP {
                    return Err(e.context(format!(
                        "stopped following: CloudWatch Logs kept failing for {}s",
                        GIVE_UP.as_secs()
                    )));
                }
                interval = (interval * 2).min(MAX_POLL);
                tracing::warn!("{e:#}; polling every {interval:?}");
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event-stream frame of StartLiveTail's response.
    fn frame(event_type: &str, payload: serde_json::Value) -> Vec<u8> {
        use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
        let header =
            |k: &'static str, v: &str| Header::new(k, HeaderValue::String(v.to_owned().into()));
        let message = Message::new(serde_json::to_vec(&payload).unwrap())
            .add_header(header(":message-type", "event"))
            .add_header(header(":event-type", event_type))
            .add_header(header(":content-type", "application/json"));
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
        out
    }

    /// `tail --follow` on AWS: StartLiveTail's stream (recorded frames), each result printed under its
    /// function, in order; the end of the session is said, not taken for success.
    #[tokio::test]
    async fn live_tail_prints_each_session_update_under_its_function() {
        use aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput;
        use aws_sdk_cloudwatchlogs::types::LogGroup;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
        use aws_smithy_types::body::SdkBody;
        let arn = |f: &str| format!("arn:aws:logs:eu-west-2:1:log-group:/aws/lambda/p-{f}");
        let described = mock!(Client::describe_log_groups).then_compute_output(move |r| {
            let name = r.log_group_name_prefix().unwrap().to_owned();
            DescribeLogGroupsOutput::builder()
                .log_groups(
                    LogGroup::builder()
                        .arn(format!("arn:aws:logs:eu-west-2:1:log-group:{name}:*"))
                        .log_group_name(name)
                        .build(),
                )
                .build()
        });
        let result = |f: &str, ts: i64, msg: &str| {
            serde_json::json!({"logStreamName": "2026/12/01/[$LATEST]abc", "logGroupIdentifier": arn(f),
                               "message": msg, "timestamp": ts, "ingestionTime": ts + 5})
        };
        let mut body = frame(
            "sessionStart",
            serde_json::json!({"requestId": "r", "sessionId": "s", "logGroupIdentifiers": [arn("notes-save"), arn("notes-publish")]}),
        );
        body.extend(frame(
            "sessionUpdate",
            serde_json::json!({"sessionMetadata": {"sampled": false}, "sessionResults": [
                result("notes-publish", 1_764_547_200_000, "note submitted"),
                result("notes-save", 1_764_547_200_050, "saved"),
            ]}),
        ));
        body.extend(frame(
            "sessionUpdate",
            serde_json::json!({"sessionMetadata": {"sampled": false}, "sessionResults": [
                result("notes-save", 1_764_547_201_000, "saved again"),
            ]}),
        ));
        let started = mock!(Client::start_live_tail)
            .match_requests(|r| {
                r.log_group_identifiers().len() == 2
                    && r.log_event_filter_pattern() == Some("saved")
            })
            .then_http_response(move || {
                let mut response =
                    HttpResponse::new(http::StatusCode::OK.into(), SdkBody::from(body.clone()));
                response
                    .headers_mut()
                    .insert("content-type", "application/vnd.amazon.eventstream");
                response
            });
        let client = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&described, &started]
        );
        let groups: Vec<Group> = ["notes-publish", "notes-save"]
            .iter()
            .map(|f| Group {
                label: f.trim_start_matches("notes-").to_owned(),
                function: format!("p-{f}"),
                name: format!("/aws/lambda/p-{f}"),
            })
            .collect();
        let mut printed = Vec::new();
        let ended = live_tail(&client, &groups, Some("saved"), |line| {
            printed.push((
                line.function.clone(),
                line.message.clone(),
                line.timestamp.clone(),
            ));
            true
        })
        .await;
        let err = ended.expect_err("the session's end is not a success");
        assert!(err.to_string().contains("live tail session ended"), "{err}");
        assert_eq!(
            printed,
            [
                (
                    "p-notes-publish".to_owned(),
                    "note submitted".to_owned(),
                    "2025-12-01T00:00:00.000Z".to_owned()
                ),
                (
                    "p-notes-save".to_owned(),
                    "saved".to_owned(),
                    "2025-12-01T00:00:00.050Z".to_owned()
                ),
                (
                    "p-notes-save".to_owned(),
                    "saved again".to_owned(),
                    "2025-12-01T00:00:01.000Z".to_owned()
                ),
            ]
        );
        assert_eq!(started.num_calls(), 1);

        // A reader that has had enough (stdout closed) stops the session quietly.
        let mut taken = 0;
        let stopped = live_tail(&client, &groups, Some("saved"), |_| {
            taken += 1;
            false
        })
        .await;
        assert!(stopped.unwrap(), "followed by live tail");
        assert_eq!(taken, 1);
    }

    #[test]
    fn since_accepts_durations_and_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_since("10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_since("30s", now).unwrap(), now - 30_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("1d", now).unwrap(), now - 86_400_000);
        assert_eq!(parse_since("5", now).unwrap(), now - 300_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20.500+00:00", now).unwrap(),
            1_700_000_000_500
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("10y", now).is_err());
    }

    #[test]
    fn lines_print_short_and_detailed() {
        let mut l = Line {
            timestamp: "2024-03-12T14:22:10.123Z".into(),
            function: "production-notes-save".into(),
            stream: "2024/03/12/[$LATEST]abc".into(),
            message: "saved\n".into(),
            millis: 0,
            label: "save".into(),
            format: Some(Format::Short),
        };
        assert_eq!(l.to_string(), "14:22:10.123 save saved");
        l.format = Some(Format::Detailed);
        assert_eq!(
            l.to_string(),
            "2024-03-12T14:22:10.123Z production-notes-save 2024/03/12/[$LATEST]abc saved"
        );
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!({"timestamp":"2024-03-12T14:22:10.123Z","function":"production-notes-save","stream":"2024/03/12/[$LATEST]abc","message":"saved\n"})
        );
    }
}
