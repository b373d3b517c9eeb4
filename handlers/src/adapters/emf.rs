//! CloudWatch custom metrics at no API cost: each metric is one line of CloudWatch Embedded Metric
//! Format on stdout, which Lambda sends to the function's log group and CloudWatch turns into a metric
//! in the `NotesApp` namespace, with a `Stage` dimension (and `Reason` for failed notes). The
//! specification: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.

use std::io::Write as _;

use serde_json::{Value, json};

use crate::domain::clock::now_millis;
use crate::ports::{Metric, MetricSink};

/// The namespace the app's metrics are in.
pub const NAMESPACE: &str = "NotesApp";

pub struct EmfSink {
    stage: String,
}

impl EmfSink {
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
        }
    }

    /// The stage from the function's name (`{stage}-{handler}`, as the templates name them), or
    /// `unknown` when the name does not end with the handler's.
    pub fn for_function(function_name: &str, handler: &str) -> Self {
        let stage = function_name
            .strip_suffix(handler)
            .and_then(|s| s.strip_suffix('-'))
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown");
        Self::new(stage)
    }

    /// The EMF document of one metric.
    pub fn line(&self, metric: Metric, timestamp_ms: i64) -> Value {
        let mut dimensions = vec!["Stage"];
        let mut doc = json!({ "Stage": self.stage });
        doc[metric.name()] = json!(metric.value());
        if let Metric::NotesFailed(reason) = metric {
            dimensions.push("Reason");
            doc["Reason"] = json!(reason.as_str());
        }
        doc["_aws"] = json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions],
                "Metrics": [{"Name": metric.name(), "Unit": metric.unit()}],
            }],
        });
        doc
    }
}

impl MetricSink for EmfSink {
    fn record(&self, metric: Metric) {
        let mut line = self.line(metric, now_millis()).to_string();
        line.push('\n');
        // One write per line, so lines of concurrent records never interleave.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::FailReason;

    /// The specification's rules for a document: `_aws` with an integer `Timestamp` and
    /// `CloudWatchMetrics`, each directive with a `Namespace`, `Dimensions` (arrays of up to 30
    /// names, each a top-level string member) and `Metrics` (up to 100, each with a `Name` that is a
    /// top-level number and a known `Unit`).
    fn assert_valid_emf(doc: &Value) {
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].is_i64(), "{doc}");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        assert!(!directives.is_empty());
        for d in directives {
            let ns = d["Namespace"].as_str().expect("Namespace");
            assert!(!ns.is_empty() && ns.len() <= 1024);
            for set in d["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("dimension names are strings");
                    assert!(doc[name].is_string(), "dimension {name} is a member: {doc}");
                }
            }
            let metrics = d["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().expect("Name");
                assert!(doc[name].is_number(), "metric {name} is a member: {doc}");
                assert!(
                    ["Count", "Milliseconds"].contains(&m["Unit"].as_str().unwrap_or("")),
                    "{m}"
                );
            }
        }
    }

    #[test]
    fn every_metric_is_a_valid_emf_document_with_the_stage() {
        let sink = EmfSink::for_function("production-notes-save", "notes-save");
        for metric in [
            Metric::NotesPublished,
            Metric::NotesSaved,
            Metric::NotesFailed(FailReason::Store),
            Metric::NotesFailed(FailReason::Unreadable),
            Metric::SaveLatency(12.5),
            Metric::ConnectionsReached(40),
            Metric::StaleConnectionsRemoved(2),
        ] {
            let doc = sink.line(metric, 1_796_000_000_000);
            assert_valid_emf(&doc);
            assert_eq!(doc["Stage"], "production");
            assert_eq!(doc[metric.name()].as_f64(), Some(metric.value()));
        }
        let failed = sink.line(Metric::NotesFailed(FailReason::Unreadable), 0);
        assert_eq!(failed["Reason"], "unreadable");
        assert_eq!(
            failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage", "Reason"]])
        );
    }

    #[test]
    fn the_stage_comes_from_the_function_name() {
        let stage = |f: &str| EmfSink::for_function(f, "websocket-notify").stage;
        assert_eq!(stage("dev-websocket-notify"), "dev");
        assert_eq!(stage("my-team-websocket-notify"), "my-team");
        assert_eq!(stage("websocket-notify"), "unknown");
        assert_eq!(stage("something-else"), "unknown");
    }
}
