//! Following a stack while CloudFormation works on it: wait until it settles, stream its events as
//! they come, and find the failed resources of a run and why they failed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::primitives::DateTime;
use aws_sdk_cloudformation::types::{Stack, StackEvent, StackStatus};

use super::{Failure, FailureStatus};
use crate::aws::stacks;
use crate::context::Context;

/// Waits (backing off, without a give-up time of our own) until the stack is in no *_IN_PROGRESS.
/// With `since`, the events from then on are printed as they appear.
pub async fn settle(
    ctx: &Context,
    cfn: &Client,
    name: &str,
    since: Option<DateTime>,
) -> anyhow::Result<Option<Stack>> {
    let mut delay = Duration::from_millis(500);
    let mut seen = HashSet::new();
    let started = Instant::now();
    // On a terminal, a spinner with the stack's status between the event lines; plain lines elsewhere.
    let spinner = ctx.spinner();
    let result = loop {
        let waited = started.elapsed();
        let stack = match stacks::describe(cfn, name).await {
            Ok(s) => s,
            // A blip (throttling, a dropped connection) while waiting is not the end of the deploy.
            Err(e)
                if waited < Duration::from_secs(3600)
                    && format!("{e:#}").contains("Throttling") =>
            {
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => break Err(e),
        };
        if let Some(since) = since {
            for line in new_events(cfn, name, since, &mut seen).await {
                match &spinner {
                    Some(s) => s.println(line),
                    None => ctx.say(line),
                }
            }
        }
        // Right after ExecuteChangeSet a new stack may still say REVIEW_IN_PROGRESS for a moment.
        let status = stack.as_ref().and_then(|s| s.stack_status());
        let starting = since.is_some()
            && status == Some(&StackStatus::ReviewInProgress)
            && waited < Duration::from_secs(60);
        let busy = starting
            || status.is_some_and(|s| {
                s.as_str().ends_with("_IN_PROGRESS") && *s != StackStatus::ReviewInProgress
            });
        if !busy {
            break Ok(stack);
        }
        if let (Some(sp), Some(st)) = (&spinner, status) {
            sp.set_message(format!("{name}: {} ({}s)", st.as_str(), waited.as_secs()));
        } else if since.is_none() && waited.as_secs().is_multiple_of(30) {
            ctx.say(format!(
                "waiting for {name}: {}",
                status.map(|s| s.as_str()).unwrap_or("?")
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    result
}

/// The stack's events from `since` on, oldest first.
async fn events_since(cfn: &Client, name: &str, since: DateTime) -> Vec<StackEvent> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = cfn
            .describe_stack_events()
            .stack_name(name)
            .set_next_token(token)
            .send()
            .await
        else {
            break;
        };
        let mut older = false;
        for e in page.stack_events() {
            if e.timestamp().is_some_and(|t| t.secs() < since.secs()) {
                older = true;
            } else {
                out.push(e.clone());
            }
        }
        match page.next_token {
            Some(t) if !older => token = Some(t),
            _ => break,
        }
    }
    out.reverse();
    out
}

/// The events not `seen` yet, as lines: time, status, resource, type and reason.
async fn new_events(
    cfn: &Client,
    name: &str,
    since: DateTime,
    seen: &mut HashSet<String>,
) -> Vec<String> {
    events_since(cfn, name, since)
        .await
        .into_iter()
        .filter(|e| seen.insert(e.event_id().unwrap_or_default().to_owned()))
        .map(|e| {
            let time = e
                .timestamp()
                .map(|t| notes_handlers::domain::clock::iso_millis(t.to_millis().unwrap_or(0)))
                .unwrap_or_default();
            format!(
                "{} {:<28} {:<36} {}{}",
                time.get(11..19).unwrap_or(""),
                e.resource_status().map(|s| s.as_str()).unwrap_or(""),
                e.logical_resource_id().unwrap_or(""),
                e.resource_type().unwrap_or(""),
                e.resource_status_reason()
                    .map(|r| format!("  {r}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// The failed resources of the run that started at `since`, with their reasons.
pub async fn failures(
    cfn: &Client,
    name: &str,
    since: DateTime,
    token: Option<&str>,
) -> Vec<Failure> {
    events_since(cfn, name, since)
        .await
        .into_iter()
        // This run's events carry its request token (where the service sets one).
        .filter(|e| {
            token.is_none()
                || e.client_request_token().is_none()
                || e.client_request_token() == token
        })
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .filter(|e| {
            !e.resource_status_reason().is_some_and(|r| {
                r.contains("Resource creation cancelled") || r.contains("Resource update cancelled")
            })
        })
        .map(|e| Failure {
            logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
            resource_type: e.resource_type().unwrap_or_default().to_owned(),
            status: FailureStatus::Resource(
                e.resource_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            reason: e
                .resource_status_reason()
                .unwrap_or("no reason given")
                .to_owned(),
        })
        .collect()
}
