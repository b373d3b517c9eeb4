//! The functions' logs, read through `tail`'s backlog: the ERROR and WARN lines of the window.

use std::time::Duration;

use super::{Check, Verdict, check};
use crate::commands::tail;
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
        for line in tail::events_of(logs, function, group.clone(), start, pattern).await? {
            count += 1;
            if newest.as_ref().is_none_or(|(t, _)| line.millis >= *t) {
                newest = Some((line.millis, line.message.trim().to_owned()));
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
