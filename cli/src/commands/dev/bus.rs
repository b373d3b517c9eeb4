//! The local event bus. It routes by the very rules of the CloudFormation templates (their
//! `AWS::Events::Rule` patterns and targets, read at build time), so `dev` and AWS agree on where each
//! event goes: a queue target is written durably to the local queue before `publish` returns, a
//! function target is handed to that function's dispatcher.

use std::collections::BTreeSet;

use async_trait::async_trait;
use notes_handlers::HandlerName;
use notes_handlers::domain::clock::now_iso;
use notes_handlers::domain::events::{EVENT_SOURCE, NoteEvent};
use notes_handlers::metering::Meter;
use notes_handlers::ports::{EventBus, FailedEntry, PublishReport, StoreError};
use serde_json::Value;
use tokio::sync::mpsc;

use super::queue::LocalQueue;

/// The templates whose rules route the app's events.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "event.yaml",
        include_str!("../../../../templates/event.yaml"),
    ),
    (
        "websocket.yaml",
        include_str!("../../../../templates/websocket.yaml"),
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An SQS queue (locally, the one processing queue).
    Queue(String),
    /// A Lambda function of the app, by handler.
    Function(HandlerName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub sources: BTreeSet<String>,
    pub detail_types: BTreeSet<String>,
    pub targets: Vec<Target>,
}

impl Rule {
    pub fn matches(&self, source: &str, detail_type: &str) -> bool {
        (self.sources.is_empty() || self.sources.contains(source))
            && (self.detail_types.is_empty() || self.detail_types.contains(detail_type))
    }
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `AWS::Events::Rule`s of a template, with targets resolved to the resources they name.
pub fn rules_of(file: &str, text: &str) -> Result<Vec<Rule>, String> {
    let doc = crate::template::parse(text).map_err(|e| format!("{file}: {e}"))?;
    let resources = doc["Resources"]
        .as_object()
        .ok_or_else(|| format!("{file}: no Resources"))?;
    let mut rules = Vec::new();
    for (id, res) in resources {
        if res["Type"].as_str() != Some("AWS::Events::Rule") {
            continue;
        }
        let props = &res["Properties"];
        let pattern = &props["EventPattern"];
        let mut targets = Vec::new();
        for t in props["Targets"].as_array().into_iter().flatten() {
            // `!GetAtt Resource.Arn` names the target resource.
            let target_id = t["Arn"]["Fn::GetAtt"][0].as_str().unwrap_or_default();
            let target = &resources[target_id];
            match target["Type"].as_str() {
                Some("AWS::SQS::Queue") => targets.push(Target::Queue(target_id.to_owned())),
                Some("AWS::Lambda::Function") => {
                    let handler = target["Properties"]["Handler"].as_str().unwrap_or_default();
                    let handler = handler
                        .parse()
                        .map_err(|e| format!("{file}: rule {id:?} targets {target_id}: {e}"))?;
                    targets.push(Target::Function(handler));
                }
                other => {
                    return Err(format!(
                        "{file}: rule {id:?} has a target of type {other:?} dev cannot run"
                    ));
                }
            }
        }
        rules.push(Rule {
            name: id.clone(),
            sources: string_set(&pattern["source"]),
            detail_types: string_set(&pattern["detail-type"]),
            targets,
        });
    }
    Ok(rules)
}

/// Every rule of the app's templates.
pub fn app_rules() -> Vec<Rule> {
    TEMPLATES
        .iter()
        .flat_map(|(file, text)| rules_of(file, text).unwrap_or_else(|e| panic!("templates/{e}")))
        .collect()
}

/// An EventBridge envelope, as a rule delivers it into SQS or to a function.
pub fn envelope(event: &NoteEvent) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": format!("{:032x}", rand::random::<u128>()),
        "detail-type": event.detail_type(),
        "source": EVENT_SOURCE,
        "account": "000000000000",
        "time": now_iso().split('.').next().map(|s| format!("{s}Z")).unwrap_or_default(),
        "region": "local",
        "resources": [],
        "detail": event,
    })
}

pub struct DevBus {
    rules: Vec<Rule>,
    queue: LocalQueue,
    functions: mpsc::UnboundedSender<(HandlerName, NoteEvent)>,
    queued: std::sync::Arc<tokio::sync::Notify>,
    /// Counts what a rule's targets are sent: `queue.send` (the bytes of each envelope) and
    /// `bus.invoke_function`, as EventBridge's target invocations are billed and throttled.
    meter: std::sync::Arc<Meter>,
}

impl DevBus {
    pub fn new(
        queue: LocalQueue,
        functions: mpsc::UnboundedSender<(HandlerName, NoteEvent)>,
        queued: std::sync::Arc<tokio::sync::Notify>,
        meter: std::sync::Arc<Meter>,
    ) -> Self {
        Self {
            rules: app_rules(),
            queue,
            functions,
            queued,
            meter,
        }
    }
}

#[async_trait]
impl EventBus for DevBus {
    async fn publish(&self, events: &[NoteEvent]) -> Result<PublishReport, StoreError> {
        let mut report = PublishReport::default();
        for (index, event) in events.iter().enumerate() {
            let mut refuse = |code: &str, message: String| {
                report.failed.push(FailedEntry {
                    index,
                    code: code.to_owned(),
                    message,
                })
            };
            for rule in self
                .rules
                .iter()
                .filter(|r| r.matches(EVENT_SOURCE, event.detail_type()))
            {
                for target in &rule.targets {
                    match target {
                        Target::Queue(_) => {
                            let body = envelope(event).to_string();
                            self.meter.add("queue.send", 1, body.len() as u64);
                            let sent = self.queue.sending(
                                super::queue::Which::Main,
                                &body,
                                None,
                                std::time::Duration::ZERO,
                            );
                            match sent.await {
                                Ok(_) => self.queued.notify_one(),
                                Err(e) => refuse("QueueWriteFailed", e.to_string()),
                            }
                        }
                        Target::Function(handler) => {
                            self.meter.add("bus.invoke_function", 1, 0);
                            if self.functions.send((*handler, event.clone())).is_err() {
                                refuse("TargetStopped", format!("{handler} is no longer running"));
                            }
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_the_templates() {
        let rules = app_rules();
        let route = |detail_type: &str| -> Vec<Target> {
            rules
                .iter()
                .filter(|r| r.matches(EVENT_SOURCE, detail_type))
                .flat_map(|r| r.targets.clone())
                .collect()
        };
        assert_eq!(
            route("note-created"),
            vec![Target::Queue("ProcessingQueue".into())]
        );
        for t in ["note-saved", "note-failed", "note-updated", "note-deleted"] {
            assert_eq!(
                route(t),
                vec![Target::Function(HandlerName::WebsocketNotify)],
                "{t}"
            );
        }
        assert!(route("something-else").is_empty());
        assert!(
            rules
                .iter()
                .all(|r| !r.matches("other.service", "note-created"))
        );
    }
}
