//! The functions' logs, read as `tail` reads them: the ERROR and WARN lines of the window.

use std::time::Duration;

use super::{Check, Verdict, check};
use crate::names;

/// The log lines of `function` in the window at ERROR or WARN: how many, and the newest. (Two term
/// patterns rather than one `?ERROR ?WARN`, which not every CloudWatch Logs emulator reads.)
async fn problems_in_logs(
    logs: &aws_sdk_cloudwatchlogs::Client,
    stage: &str,
    function: &str,
    since: Duration,
) -> anyhow::Result<(usize, Option<String>)> {
    let group = names::log_group(&names::function(stage, function));
    let start = notes_handlers::domain::clock::now_millis() - since.as_millis() as i64;
    let (mut count, mut newest): (usize, Option<(i64, String)>) = (0, None);
    for pattern in ["ERROR", "WARN"] {
        let mut token = None;
        loop {
            let out = logs
                .filter_log_events()
                .log_group_name(&group)
                .start_time(start)
                .filter_pattern(pattern)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "reading {group}: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    )
                })?;
            for e in out.events() {
                count += 1;
                let at = e.timestamp().unwrap_or_default();
                if newest.as_ref().is_none_or(|(t, _)| at >= *t) {
                    newest = Some((at, e.message().unwrap_or_default().trim().to_owned()));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    Ok((count, newest.map(|(_, m)| m)))
}

pub(super) async fn logs_check(
    name: &str,
    logs: &aws_sdk_cloudwatchlogs::Client,
    stage: &str,
    function: &str,
    since: Duration,
    next: &str,
) -> Check {
    match problems_in_logs(logs, stage, function, since).await {
        Ok((0, _)) => check(name, Verdict::Pass, "none", None),
        Ok((n, newest)) => check(
            name,
            Verdict::Fail,
            format!("{n}, the newest: {}", newest.unwrap_or_default()),
            Some(next),
        ),
        Err(e) => check(
            name,
            Verdict::Unknown,
            format!("{e:#}"),
            Some(&format!("notesctl tail {function} --since 15m")),
        ),
    }
}
