//! "Notes not saving": are `note-created` events matched, is the queue backing up, errors in save's
//! logs, dead letters and a sample of them.

use std::time::Duration;

use serde_json::Value;

use super::{Runbook, Verdict, check, logs_check, total};
use crate::aws::queues::Queues;
use crate::commands::metrics::MetricsReport;
use crate::context::Context;
use crate::names;

/// The first message on the DLQ, looked at and left there: its note id and receive count.
async fn peek_dead_letter(queues: &Queues) -> Option<String> {
    let got = queues
        .sqs
        .receive_message()
        .queue_url(&queues.dlq.url)
        .max_number_of_messages(1)
        .visibility_timeout(0)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .ok()?;
    let m = got.messages?.into_iter().next()?;
    let body: Value = serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
    let detail = body.get("detail").unwrap_or(&body);
    let receives = m
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        })
        .cloned()
        .unwrap_or_default();
    Some(format!(
        "a sample: note {} (received {receives} times)",
        detail["noteId"].as_str().unwrap_or("(not a note)")
    ))
}

pub(super) async fn notes_not_saving(
    ctx: &Context,
    local: bool,
    config: &aws_config::SdkConfig,
    metrics: &Option<MetricsReport>,
    since: Duration,
) -> Runbook {
    let stage = ctx.stage();
    let mut checks = Vec::new();
    // 1. Are note-created events matched by the rule (reach the queue)?
    let matched_label = if local {
        "sent".to_owned()
    } else {
        format!("{stage}-note-created-to-queue matched")
    };
    let name = "note-created events reach the queue";
    checks.push(match metrics {
        None => check(name, Verdict::Unknown, "no metrics", Some("notesctl metrics")),
        Some(m) => match (total(m, "notes published"), total(m, &matched_label)) {
            (Some(p), Some(q)) if q >= p => check(name, Verdict::Pass, format!("{p} published, {q} matched"), None),
            (Some(p), Some(q)) => check(
                name,
                Verdict::Fail,
                format!("{p} published, only {q} matched by the rule"),
                Some(&format!("the rule {stage}-note-created-to-queue: its pattern (source notes.service, detail-type note-created), its target and the queue's policy")),
            ),
            _ => check(name, Verdict::Unknown, "no notes published in the window", None),
        },
    });
    // 2. Is the queue backing up? 3. Dead letters, and why.
    let name = "the processing queue is not backing up";
    let dlq_name = "no dead letters";
    // The queue twice, 3 s apart: messages that stay are not being taken.
    let measured = async {
        let queues = Queues::find(config, stage, local).await?;
        let first = queues.measure().await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let second = queues.measure().await?;
        anyhow::Ok((queues, first, second))
    }
    .await;
    match measured {
        Err(e) => {
            checks.push(check(
                name,
                Verdict::Unknown,
                format!("{e:#}"),
                Some("notesctl queue-depth"),
            ));
            checks.push(check(
                dlq_name,
                Verdict::Unknown,
                "the queues could not be read",
                None,
            ));
        }
        Ok((queues, a, b)) => {
            let q = &b.queue;
            let old = q.oldest_age_seconds.is_some_and(|s| s > 300);
            let stuck = a.queue.visible > 0 && q.visible >= a.queue.visible;
            let evidence = format!(
                "{} visible, {} in flight{}",
                q.visible,
                q.in_flight,
                q.oldest_age_seconds
                    .map(|s| format!(", the oldest {s}s old"))
                    .unwrap_or_default()
            );
            checks.push(if old || stuck {
                let why = if stuck { "; none taken in 3 s" } else { "" };
                check(name, Verdict::Fail, format!("{evidence}{why}"), Some(&format!(
                    "is notes-save running? `notesctl tail save --since 15m`; on AWS, the event source mapping of {} to {stage}-notes-save must be enabled{}",
                    names::queue(stage),
                    if local { " (`notesctl dev --hold-queue` holds it)" } else { "" }
                )))
            } else {
                check(name, Verdict::Pass, evidence, None)
            });
            checks.push(if b.dlq.visible > 0 {
                let sample = peek_dead_letter(&queues).await.unwrap_or_default();
                check(
                    dlq_name,
                    Verdict::Fail,
                    format!("{} holds {}; {sample}", names::dlq(stage), b.dlq.visible),
                    Some("`notesctl redrive-dlq --dry-run` to see them, fix the cause (`notesctl tail save`), then `notesctl redrive-dlq --yes`"),
                )
            } else {
                check(dlq_name, Verdict::Pass, format!("{} is empty", names::dlq(stage)), None)
            });
        }
    }
    // 4. Errors in save's logs.
    let logs = aws_sdk_cloudwatchlogs::Client::new(config);
    checks.insert(
        2,
        logs_check(
            &format!("no errors in {stage}-notes-save's logs"),
            &logs,
            stage,
            "notes-save",
            since,
            "`notesctl tail save --filter ERROR` for the whole story",
        )
        .await,
    );
    Runbook {
        name: "Notes not saving".into(),
        checks,
    }
}
