//! Following a stack while CloudFormation works on it: wait until it settles, stream its events as
//! they come, and find the failed resources of a run and why they failed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::primitives::DateTime;
use aws_sdk_cloudformation::types::{Stack, StackEvent, StackStatus};

use super::{Failure, FailureStatus};
use crate::aws::{explain, is_transient, stacks};
use crate::context::{Context, Deadline};

/// Where a wait for a stack ended.
pub enum Settled {
    /// In no *_IN_PROGRESS state (or gone: `None`).
    Done(Option<Stack>),
    /// Still in progress when the deadline came; CloudFormation goes on without us.
    StillRunning(Option<Stack>),
}

/// Waits, backing off, until the stack is in no *_IN_PROGRESS state or the deadline comes. With
/// `since`, the events from then on are printed as they appear. A call that fails in passing
/// (throttling, a 5xx, a dropped connection — after the SDK's own retries) is tried again at the
/// next poll; one that cannot succeed (expired credentials, AccessDenied) ends the wait.
pub async fn settle(
    ctx: &Context,
    cfn: &Client,
    name: &str,
    since: Option<DateTime>,
    deadline: &Deadline,
) -> anyhow::Result<Settled> {
    let mut delay = Duration::from_millis(500);
    let mut seen = HashSet::new();
    let mut events_unreadable = false;
    let started = Instant::now();
    // On a terminal, a spinner with the stack's status between the event lines; plain lines elsewhere.
    let spinner = ctx.spinner();
    let result = loop {
        let waited = started.elapsed();
        let stack = match stacks::describe(cfn, name).await {
            Ok(s) => s,
            Err(e) if is_transient(&e) && !deadline.expired() => {
                tracing::warn!("{e:#}; asking again");
                deadline.sleep(delay).await;
                continue;
            }
            Err(e) => break Err(e),
        };
        if let Some(since) = since {
            match new_events(cfn, name, since, &mut seen).await {
                Ok(lines) => {
                    for line in lines {
                        match &spinner {
                            Some(s) => s.println(line),
                            None => ctx.say(line),
                        }
                    }
                }
                // The events are for people; the status decides. Say once that they are missing.
                Err(e) if !events_unreadable && !is_transient(&e) => {
                    events_unreadable = true;
                    tracing::warn!("{e:#}; following the stack's status without its events");
                }
                Err(_) => {}
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
            break Ok(Settled::Done(stack));
        }
        if let (Some(sp), Some(st)) = (&spinner, status) {
            sp.set_message(format!("{name}: {} ({}s)", st.as_str(), waited.as_secs()));
        } else if since.is_none() && waited.as_secs().is_multiple_of(30) {
            ctx.say(format!(
                "waiting for {name}: {}",
                status.map(|s| s.as_str()).unwrap_or("?")
            ));
        }
        if !deadline.sleep(delay).await {
            break Ok(Settled::StillRunning(stack));
        }
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    result
}

/// The stack's events from `since` on, oldest first.
async fn events_since(
    cfn: &Client,
    name: &str,
    since: DateTime,
) -> anyhow::Result<Vec<StackEvent>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .describe_stack_events()
            .stack_name(name)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| explain(&format!("reading the events of {name}"), &e))?;
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
    Ok(out)
}

/// The events not `seen` yet, as lines: time, status, resource, type and reason.
async fn new_events(
    cfn: &Client,
    name: &str,
    since: DateTime,
    seen: &mut HashSet<String>,
) -> anyhow::Result<Vec<String>> {
    Ok(events_since(cfn, name, since)
        .await?
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
        .collect())
}

/// The failed resources of the run that started at `since`, with their reasons.
pub async fn failures(
    cfn: &Client,
    name: &str,
    since: DateTime,
    token: Option<&str>,
) -> anyhow::Result<Vec<Failure>> {
    Ok(events_since(cfn, name, since)
        .await?
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
        .collect())
}
