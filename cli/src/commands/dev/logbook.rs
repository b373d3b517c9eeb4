//! The functions' logs in `dev`, kept per function as CloudWatch Logs would, so `notesctl tail
//! --local` reads them through the same `FilterLogEvents` call it makes on AWS. A tracing layer
//! records every event emitted inside a handler invocation (the `function` span) as the JSON line the
//! Lambda binary would print.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use notes_handlers::HandlerName;
use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Events kept per function; older ones are dropped, as a retention period would.
const KEEP: usize = 20_000;

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub id: u64,
    pub timestamp_ms: i64,
    pub stream: String,
    pub message: String,
}

#[derive(Default)]
pub struct LogBook {
    by_function: Mutex<HashMap<HandlerName, VecDeque<LogEvent>>>,
    next_id: AtomicU64,
    stream: OnceLock<String>,
}

impl LogBook {
    /// The process-wide log book.
    pub fn global() -> Arc<LogBook> {
        static BOOK: OnceLock<Arc<LogBook>> = OnceLock::new();
        BOOK.get_or_init(Arc::default).clone()
    }

    fn stream(&self) -> &str {
        self.stream.get_or_init(|| {
            let now = notes_handlers::domain::clock::now_iso();
            format!(
                "{}/[$LATEST]dev-{:08x}",
                now[..10].replace('-', "/"),
                std::process::id()
            )
        })
    }

    pub fn record(&self, function: HandlerName, timestamp_ms: i64, message: String) {
        let event = LogEvent {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            timestamp_ms,
            stream: self.stream().to_owned(),
            message,
        };
        let mut all = self.by_function.lock().expect("log book lock");
        let q = all.entry(function).or_default();
        if q.len() >= KEEP {
            q.pop_front();
        }
        q.push_back(event);
    }

    /// Events of a function at or after `start_ms`, oldest first, after event id `after` (paging).
    pub fn read(
        &self,
        function: HandlerName,
        start_ms: i64,
        end_ms: Option<i64>,
        after: Option<u64>,
        limit: usize,
    ) -> Vec<LogEvent> {
        let all = self.by_function.lock().expect("log book lock");
        all.get(&function)
            .map(|q| {
                q.iter()
                    .filter(|e| {
                        e.timestamp_ms >= start_ms && end_ms.is_none_or(|end| e.timestamp_ms <= end)
                    })
                    .filter(|e| after.is_none_or(|a| e.id > a))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The function an invocation span runs, stored in the span's extensions.
struct InFunction(HandlerName);

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// Records events inside `function` spans into the global log book.
pub struct LogBookLayer;

impl<S> Layer<S> for LogBookLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "function" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let name = fields
            .0
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| n.parse().ok());
        if let (Some(handler), Some(span)) = (name, ctx.span(id)) {
            let mut ext = span.extensions_mut();
            ext.insert(InFunction(handler));
            ext.insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let mut function = None;
        let mut span_fields = Map::new();
        for span in scope.from_root() {
            let ext = span.extensions();
            if let Some(InFunction(h)) = ext.get::<InFunction>() {
                function = Some(*h);
                if let Some(Fields(f)) = ext.get::<Fields>() {
                    span_fields.extend(
                        f.iter()
                            .filter(|(k, _)| k.as_str() != "name")
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
            }
        }
        let Some(function) = function else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = notes_handlers::domain::clock::now_millis();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(notes_handlers::domain::clock::iso_millis(now)),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert("fields".into(), Value::Object(fields.0));
        line.insert("span".into(), Value::Object(span_fields));
        LogBook::global().record(function, now, Value::Object(line).to_string());
    }
}

/// A CloudWatch Logs filter pattern, the term subset: every bare or quoted term must appear,
/// `-term` must not, and among `?term`s at least one must. JSON and space-delimited patterns are not
/// supported locally.
pub fn matches(pattern: &str, message: &str) -> Result<bool, String> {
    let p = pattern.trim();
    if p.is_empty() {
        return Ok(true);
    }
    if p.starts_with('{') || p.starts_with('[') {
        return Err("notesctl dev supports term filter patterns (words, \"phrases\", -exclude, ?any); JSON and space-delimited patterns need AWS".into());
    }
    let mut terms = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (prefix, body) = match rest.chars().next() {
            Some(c @ ('-' | '?')) => (Some(c), &rest[1..]),
            _ => (None, rest),
        };
        let (term, tail) = if let Some(quoted) = body.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            (&body[..end], &body[end..])
        };
        if !term.is_empty() {
            terms.push((prefix, term));
        }
        rest = tail;
    }
    let required = terms
        .iter()
        .filter(|(p, _)| p.is_none())
        .all(|(_, t)| message.contains(t));
    let excluded = terms
        .iter()
        .filter(|(p, _)| *p == Some('-'))
        .any(|(_, t)| message.contains(t));
    let any: Vec<_> = terms.iter().filter(|(p, _)| *p == Some('?')).collect();
    let some = any.is_empty() || any.iter().any(|(_, t)| message.contains(t));
    Ok(required && !excluded && some)
}

/// The function behind `/aws/lambda/{stage}-{handler}` (any stage: dev runs one app).
fn function_of(group: &str) -> Option<notes_handlers::HandlerName> {
    let function = group.strip_prefix("/aws/lambda/")?;
    notes_handlers::HandlerName::ALL
        .iter()
        .copied()
        .find(|h| function == h.as_str() || function.ends_with(&format!("-{}", h.as_str())))
}

/// CloudWatch Logs (`FilterLogEvents`) over the functions' logs that dev keeps, for the runbook API:
/// the answer, or the error's code and message.
pub fn serve(op: &str, input: &Value) -> Result<Value, (&'static str, String)> {
    match op {
        "FilterLogEvents" => {
            let group = input["logGroupName"].as_str().unwrap_or_default();
            let function = function_of(group).ok_or_else(|| {
                ("ResourceNotFoundException", format!("The specified log group does not exist: {group} is not a function of the notes app"))
            })?;
            let pattern = input["filterPattern"].as_str().unwrap_or_default();
            matches(pattern, "").map_err(|m| ("InvalidParameterException", m))?;
            let after = input["nextToken"]
                .as_str()
                .and_then(|t| t.parse::<u64>().ok());
            let limit = input["limit"].as_u64().unwrap_or(10_000).min(10_000) as usize;
            let events = LogBook::global().read(
                function,
                input["startTime"].as_i64().unwrap_or(0),
                input["endTime"].as_i64(),
                after,
                limit,
            );
            let more = events.len() == limit;
            let next = events.last().map(|e| e.id.to_string());
            let events: Vec<Value> = events
                .into_iter()
                .filter(|e| matches(pattern, &e.message).unwrap_or(true))
                .map(|e| json!({"logStreamName": e.stream, "timestamp": e.timestamp_ms, "ingestionTime": e.timestamp_ms, "message": e.message, "eventId": e.id.to_string()}))
                .collect();
            let mut out = json!({"events": events, "searchedLogStreams": []});
            if more && let Some(next) = next {
                out["nextToken"] = json!(next);
            }
            Ok(out)
        }
        other => Err((
            "UnsupportedOperation",
            format!("CloudWatch Logs {other} is not offered by the notesctl dev server"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_patterns() {
        assert!(matches("", "x").unwrap());
        assert!(matches("ERROR", "an ERROR here").unwrap());
        assert!(!matches("ERROR", "all fine").unwrap());
        assert!(matches("\"note failed\" -retry", "the note failed").unwrap());
        assert!(!matches("\"note failed\" -retry", "the note failed; retry").unwrap());
        assert!(matches("?WARN ?ERROR", "WARN x").unwrap());
        assert!(!matches("?WARN ?ERROR", "INFO x").unwrap());
        assert!(matches("{ $.level = \"ERROR\" }", "x").is_err());
    }

    #[test]
    fn the_book_keeps_order_pages_and_windows() {
        let book = LogBook::default();
        for i in 0..5 {
            book.record(HandlerName::NotesSave, 1000 + i, format!("m{i}"));
        }
        book.record(HandlerName::NotesPublish, 1002, "p".into());
        let all = book.read(HandlerName::NotesSave, 1001, None, None, 100);
        assert_eq!(
            all.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["m1", "m2", "m3", "m4"]
        );
        let page = book.read(HandlerName::NotesSave, 0, None, Some(all[1].id), 2);
        assert_eq!(
            page.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["m3", "m4"]
        );
        assert_eq!(
            book.read(HandlerName::NotesSave, 0, Some(1001), None, 100)
                .len(),
            2
        );
    }
}
