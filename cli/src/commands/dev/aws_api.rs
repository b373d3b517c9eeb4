//! The slice of AWS's own APIs that the runbook commands use, served by `dev` on its port, so
//! `queue-depth`, `redrive-dlq` and `tail` run the same SDK code against `dev` as against AWS:
//! SQS (JSON protocol) on the local queue and its DLQ, and CloudWatch Logs over the functions' logs.
//! Requests must be SigV4-signed with this run's token (see [`super::guard`]); parameters are held to
//! SQS's own limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::guard::Guard;
use super::history::DevCounters;
use super::queue::{LocalQueue, Message, Which};

pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "local";
const MAX_REQUEST: usize = 1024 * 1024;

/// Move tasks started on this server, newest last.
#[derive(Default)]
pub struct MoveTasks {
    tasks: Mutex<Vec<Value>>,
}

pub type SharedMoveTasks = Arc<MoveTasks>;

struct AwsError {
    status: StatusCode,
    /// `sqs` or `logs`: how the error type is spelled, and the JSON protocol version.
    service: &'static str,
    code: &'static str,
    query_code: &'static str,
    message: String,
}

impl AwsError {
    fn client(code: &'static str, query_code: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status: StatusCode::BAD_REQUEST,
            service: "sqs",
            code,
            query_code,
            message: message.into(),
        }
    }

    fn no_queue(name: &str) -> Self {
        Self::client(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!(
                "The specified queue {name} does not exist on this notesctl dev server (it has *-note-processing-queue and *-note-processing-dlq)"
            ),
        )
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        AwsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            service: "sqs",
            code: "InternalError",
            query_code: "InternalError",
            message: e.to_string(),
        }
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let (kind, content_type) = match self.service {
            "logs" => (self.code.to_owned(), "application/x-amz-json-1.1"),
            _ => (
                format!("com.amazonaws.sqs#{}", self.code),
                "application/x-amz-json-1.0",
            ),
        };
        let body = json!({"__type": kind, "message": self.message});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", self.query_code)) {
            h.insert("x-amzn-query-error", v);
        }
        resp
    }
}

/// SQS's own limits, checked as SQS checks them.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
const MAX_VISIBILITY_SECONDS: i64 = 43_200;
const MAX_DELAY_SECONDS: i64 = 900;
const MAX_WAIT_SECONDS: i64 = 20;
const MAX_BATCH: usize = 10;

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterValue", "InvalidParameterValue", message)
}

/// An optional integer parameter within SQS's range; anything else (a fraction, `1e9`, text, a
/// value out of range) is refused as SQS refuses it.
fn int_param(
    input: &Value,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, AwsError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(invalid(format!(
                "Value {v} for parameter {name} is invalid. Reason: must be an integer from {} to {}.",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// A message body as SQS accepts it: present, not empty, the characters XML allows, and with its
/// attributes at most 256 KiB.
fn check_message(entry: &Value) -> Result<(String, Option<Value>, Duration), AwsError> {
    let body = match entry.get("MessageBody") {
        Some(Value::String(b)) if !b.is_empty() => b.clone(),
        _ => {
            return Err(AwsError::client(
                "MissingParameter",
                "MissingParameter",
                "The request must contain the parameter MessageBody (a non-empty string).",
            ));
        }
    };
    let allowed = |c: char| matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if let Some(c) = body.chars().find(|c| !allowed(*c)) {
        return Err(AwsError::client(
            "InvalidMessageContents",
            "InvalidMessageContents",
            format!(
                "Invalid characters found in the message body: U+{:04X} is not allowed.",
                c as u32
            ),
        ));
    }
    let attributes = entry
        .get("MessageAttributes")
        .filter(|a| !a.is_null())
        .cloned();
    let attribute_bytes = attributes
        .as_ref()
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| k.len() + v.to_string().len())
                .sum::<usize>()
        })
        .unwrap_or(0);
    if body.len() + attribute_bytes > MAX_MESSAGE_BYTES {
        return Err(invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes."
        )));
    }
    let delay = int_param(entry, "DelaySeconds", 0..=MAX_DELAY_SECONDS)?.unwrap_or(0);
    Ok((body, attributes, Duration::from_secs(delay as u64)))
}

/// A batch's entries: 1 to 10, with distinct `Id`s.
fn batch_entries(input: &Value) -> Result<Vec<Value>, AwsError> {
    let entries = input["Entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err(AwsError::client(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(AwsError::client(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!(
                "Maximum number of entries per request are {MAX_BATCH}. You have sent {}.",
                entries.len()
            ),
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for e in &entries {
        if !ids.insert(e["Id"].to_string()) {
            return Err(AwsError::client(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {} repeated.", e["Id"]),
            ));
        }
    }
    Ok(entries)
}

fn ok(body: Value) -> Response {
    let mut resp = (StatusCode::OK, Body::from(body.to_string())).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    resp
}

/// Which local queue a name, URL or ARN means.
fn which(name_or_url: &str) -> Option<Which> {
    let name = name_or_url.rsplit(['/', ':']).next().unwrap_or_default();
    if name.ends_with("note-processing-dlq") {
        Some(Which::Dead)
    } else if name.ends_with("note-processing-queue") {
        Some(Which::Main)
    } else {
        None
    }
}

fn queue_name(w: Which, stage: &str) -> String {
    match w {
        Which::Main => format!("{stage}-note-processing-queue"),
        Which::Dead => format!("{stage}-note-processing-dlq"),
    }
}

fn arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// The stage prefix a caller used (`dev-note-processing-queue` → `dev`).
fn stage_of(name_or_url: &str) -> String {
    let name = name_or_url.rsplit(['/', ':']).next().unwrap_or_default();
    name.trim_end_matches("note-processing-queue")
        .trim_end_matches("note-processing-dlq")
        .trim_end_matches('-')
        .to_owned()
}

fn message_json(m: &Message, receipt: bool) -> Value {
    let mut v = json!({
        "MessageId": m.id,
        "Body": m.body,
        "Attributes": {
            "ApproximateReceiveCount": m.receive_count.to_string(),
            "SentTimestamp": m.sent_at_ms.to_string(),
            "ApproximateFirstReceiveTimestamp": m.first_received_at_ms.unwrap_or(m.sent_at_ms).to_string(),
            "SenderId": ACCOUNT,
        },
    });
    if receipt {
        v["ReceiptHandle"] = json!(format!("{}#{}", m.id, m.receive_count));
    }
    if let Some(attrs) = &m.attributes {
        v["MessageAttributes"] = attrs.clone();
    }
    v
}

fn receipt_id(handle: &str) -> String {
    handle.split('#').next().unwrap_or_default().to_owned()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, AwsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(AwsError::internal)?
        .map_err(AwsError::internal)
}

/// Serves one AWS JSON-protocol request (`X-Amz-Target: AmazonSQS.<Operation>`, `Logs_20140328.*`,
/// or dev's own `NotesctlDev.*` ([`super::history`]).
/// Only callers signing with this run's token get past `guard` (403 otherwise, as AWS answers a bad
/// signature).
pub async fn serve(
    queue: &LocalQueue,
    move_tasks: &SharedMoveTasks,
    guard: &Guard,
    counters: Option<&DevCounters>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let body = match to_bytes(body, MAX_REQUEST).await {
        Ok(b) => b,
        Err(_) => {
            return AwsError::client("RequestTooLarge", "RequestTooLarge", "request over 1 MiB")
                .into_response();
        }
    };
    let service = if target.starts_with("Logs_20140328.") || target.starts_with("NotesctlDev.") {
        "logs"
    } else {
        "sqs"
    };
    if let Err(refusal) = guard.verify(&parts.method, &parts.uri, &parts.headers, &body) {
        tracing::warn!(target = %target, code = refusal.code, "refused an unsigned or wrongly signed AWS API request");
        return AwsError {
            status: StatusCode::FORBIDDEN,
            service,
            code: refusal.code,
            query_code: refusal.code,
            message: refusal.message,
        }
        .into_response();
    }
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ if body.is_empty() => json!({}),
        _ => {
            return AwsError {
                status: StatusCode::BAD_REQUEST,
                service,
                code: "SerializationException",
                query_code: "SerializationException",
                message: "the request body is not a JSON object".into(),
            }
            .into_response();
        }
    };
    let result = match target.strip_prefix("Logs_20140328.") {
        Some(op) => logs(op, &input).map(|v| (v, "application/x-amz-json-1.1")),
        None if target.starts_with("NotesctlDev.") => {
            super::history::serve(counters, &target, &input)
                .map(|v| (v, "application/x-amz-json-1.1"))
                .map_err(|(code, message)| logs_error(code, message))
        }
        None => sqs(queue, move_tasks, &target, &input, &host)
            .await
            .map(|v| (v, "application/x-amz-json-1.0")),
    };
    match result {
        Ok((v, content_type)) => {
            let mut resp = ok(v);
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn logs_error(code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError {
        status: StatusCode::BAD_REQUEST,
        service: "logs",
        code,
        query_code: code,
        message: message.into(),
    }
}

/// CloudWatch Logs over the functions' logs that dev keeps ([`super::logbook`]).
fn logs(op: &str, input: &Value) -> Result<Value, AwsError> {
    super::logbook::serve(op, input).map_err(|(code, message)| logs_error(code, message))
}

fn queue_of(input: &Value) -> Result<(Which, String), AwsError> {
    let url = input["QueueUrl"].as_str().unwrap_or_default();
    which(url)
        .map(|w| (w, stage_of(url)))
        .ok_or_else(|| AwsError::no_queue(url))
}

async fn sqs(
    queue: &LocalQueue,
    tasks: &SharedMoveTasks,
    target: &str,
    input: &Value,
    host: &str,
) -> Result<Value, AwsError> {
    let op = target.strip_prefix("AmazonSQS.").ok_or_else(|| {
        AwsError::client(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("{target:?} is not an API this dev server offers (SQS only)"),
        )
    })?;
    let url = |name: &str| format!("http://{host}/{ACCOUNT}/{name}");
    match op {
        "ListQueues" => {
            let prefix = input["QueueNamePrefix"].as_str().unwrap_or_default();
            let stage = if prefix.is_empty() {
                crate::context::LOCAL_STAGE
            } else {
                prefix.trim_end_matches('-')
            };
            Ok(
                json!({"QueueUrls": [url(&queue_name(Which::Main, stage)), url(&queue_name(Which::Dead, stage))]}),
            )
        }
        "GetQueueUrl" => {
            let name = input["QueueName"].as_str().unwrap_or_default();
            which(name).ok_or_else(|| AwsError::no_queue(name))?;
            Ok(json!({"QueueUrl": url(name)}))
        }
        "GetQueueAttributes" => {
            let (w, stage) = queue_of(input)?;
            let q = queue.clone();
            let d = blocking(move || q.depth_of_queue(w)).await?;
            let name = queue_name(w, &stage);
            let mut attrs = json!({
                "ApproximateNumberOfMessages": d.visible.to_string(),
                "ApproximateNumberOfMessagesNotVisible": d.in_flight.to_string(),
                "ApproximateNumberOfMessagesDelayed": d.delayed.to_string(),
                "QueueArn": arn(&name),
                "VisibilityTimeout": queue.visibility.as_secs().to_string(),
                "MessageRetentionPeriod": if w == Which::Dead { "1209600" } else { "345600" },
                "ReceiveMessageWaitTimeSeconds": "20",
            });
            if w == Which::Main {
                attrs["RedrivePolicy"] = json!(json!({"deadLetterTargetArn": arn(&queue_name(Which::Dead, &stage)), "maxReceiveCount": queue.max_receives}).to_string());
            }
            Ok(json!({"Attributes": attrs}))
        }
        "SendMessage" => {
            let (w, _) = queue_of(input)?;
            let (body, attrs, delay) = check_message(input)?;
            let q = queue.clone();
            let id = blocking(move || q.send_to(w, &body, attrs, delay)).await?;
            Ok(json!({"MessageId": id}))
        }
        "SendMessageBatch" => {
            let (w, _) = queue_of(input)?;
            let entries = batch_entries(input)?;
            let total: usize = entries
                .iter()
                .map(|e| e["MessageBody"].as_str().map_or(0, str::len))
                .sum();
            if total > MAX_MESSAGE_BYTES {
                return Err(AwsError::client(
                    "BatchRequestTooLong",
                    "AWS.SimpleQueueService.BatchRequestTooLong",
                    format!(
                        "Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have sent {total} bytes."
                    ),
                ));
            }
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            for e in entries {
                match check_message(&e) {
                    Ok((body, attrs, delay)) => {
                        let q = queue.clone();
                        let id = blocking(move || q.send_to(w, &body, attrs, delay)).await?;
                        ok.push(json!({"Id": e["Id"], "MessageId": id}));
                    }
                    Err(err) => failed.push(json!({"Id": e["Id"], "SenderFault": true, "Code": err.code, "Message": err.message})),
                }
            }
            Ok(json!({"Successful": ok, "Failed": failed}))
        }
        "ReceiveMessage" => {
            let (w, _) = queue_of(input)?;
            let max = int_param(input, "MaxNumberOfMessages", 1..=MAX_BATCH as i64)?.unwrap_or(1)
                as usize;
            let vis = int_param(input, "VisibilityTimeout", 0..=MAX_VISIBILITY_SECONDS)?
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(queue.visibility);
            let wait = Duration::from_secs(
                int_param(input, "WaitTimeSeconds", 0..=MAX_WAIT_SECONDS)?.unwrap_or(0) as u64,
            );
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let q = queue.clone();
                let got = blocking(move || q.receive_from(w, max, vis)).await?;
                if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                    let messages: Vec<Value> = got.iter().map(|m| message_json(m, true)).collect();
                    return Ok(json!({"Messages": messages}));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        "DeleteMessage" => {
            let (w, _) = queue_of(input)?;
            let id = receipt_id(input["ReceiptHandle"].as_str().unwrap_or_default());
            let q = queue.clone();
            blocking(move || q.delete_durably(w, &[id])).await?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            let (w, _) = queue_of(input)?;
            let entries = batch_entries(input)?;
            let ids: Vec<String> = entries
                .iter()
                .map(|e| receipt_id(e["ReceiptHandle"].as_str().unwrap_or_default()))
                .collect();
            let q = queue.clone();
            blocking(move || q.delete_durably(w, &ids)).await?;
            let ok: Vec<Value> = entries.iter().map(|e| json!({"Id": e["Id"]})).collect();
            Ok(json!({"Successful": ok, "Failed": []}))
        }
        "StartMessageMoveTask" => {
            let source = input["SourceArn"].as_str().unwrap_or_default();
            if which(source) != Some(Which::Dead) {
                return Err(AwsError::client(
                    "InvalidParameterValue",
                    "InvalidParameterValue",
                    format!("{source} is not a dead-letter queue"),
                ));
            }
            let q = queue.clone();
            let to_move = blocking(move || q.depth_of_queue(Which::Dead)).await?;
            let q = queue.clone();
            let moved = blocking(move || q.redrive(usize::MAX)).await?;
            let handle = format!("{:032x}", rand::random::<u128>());
            let stage = stage_of(source);
            tasks.tasks.lock().unwrap().push(json!({
                "TaskHandle": handle,
                "Status": "COMPLETED",
                "SourceArn": source,
                "DestinationArn": input["DestinationArn"].as_str().map(str::to_owned).unwrap_or_else(|| arn(&queue_name(Which::Main, &stage))),
                "MaxNumberOfMessagesPerSecond": input["MaxNumberOfMessagesPerSecond"],
                "ApproximateNumberOfMessagesMoved": moved,
                "ApproximateNumberOfMessagesToMove": to_move.visible + to_move.in_flight,
                "StartedTimestamp": notes_handlers::domain::clock::now_millis(),
            }));
            Ok(json!({"TaskHandle": handle}))
        }
        "ListMessageMoveTasks" => {
            let source = input["SourceArn"].as_str().unwrap_or_default();
            let results: Vec<Value> = tasks
                .tasks
                .lock()
                .unwrap()
                .iter()
                .rev()
                .filter(|t| t["SourceArn"] == source)
                .take(10)
                .cloned()
                .collect();
            Ok(json!({"Results": results}))
        }
        other => Err(AwsError::client(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("SQS {other} is not offered by the notesctl dev server"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_arns_map_to_queues() {
        assert_eq!(
            which("http://127.0.0.1:3000/000000000000/production-note-processing-queue"),
            Some(Which::Main)
        );
        assert_eq!(
            which("arn:aws:sqs:local:000000000000:dev-note-processing-dlq"),
            Some(Which::Dead)
        );
        assert_eq!(which("other-queue"), None);
        assert_eq!(
            stage_of("http://h/0/my-stage-note-processing-dlq"),
            "my-stage"
        );
    }
}
