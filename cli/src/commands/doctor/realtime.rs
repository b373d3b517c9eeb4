//! The real-time runbook's own reads: the notify rule's DLQ, and the probe note coming back saved on
//! the doctor's socket.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::{Check, Verdict, check};
use crate::app_client::Socket;

/// The notify rule's dead-letter queue: events EventBridge gave up delivering to notify.
pub(super) async fn notify_dlq(config: &aws_config::SdkConfig, stage: &str, local: bool) -> Check {
    let name = "no undelivered result events";
    if local {
        return check(
            name,
            Verdict::Unknown,
            "notesctl dev has no notify DLQ: it tries notify four times (three retries), then logs the event",
            None,
        );
    }
    let queue = crate::names::notify_dlq(stage);
    let sqs = aws_sdk_sqs::Client::new(config);
    let visible = async {
        let url = sqs
            .get_queue_url()
            .queue_name(&queue)
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?;
        anyhow::Ok(
            attrs
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                })
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0),
        )
    }
    .await;
    match visible {
        Ok(0) => check(name, Verdict::Pass, format!("{queue} is empty"), None),
        Ok(n) => check(
            name,
            Verdict::Fail,
            format!("{queue} holds {n}"),
            Some(
                "their browsers missed these updates (a refresh shows the notes); the rule's target and notify's errors: `notesctl tail notify --since 1h`",
            ),
        ),
        Err(e) => check(
            name,
            Verdict::Unknown,
            format!("{queue}: {}", e.root_cause()),
            Some("deploy the websocket stack, or check --stage and --region"),
        ),
    }
}

/// Reads the socket until `note-saved` for `note_id` arrives (or `within` passes).
pub(super) async fn wait_saved(socket: &mut Socket, note_id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(msg))) = tokio::time::timeout(left, socket.next()).await else {
            return false;
        };
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if v["eventType"] == "note-saved" && v["noteId"] == note_id {
                return true;
            }
        }
    }
}
