//! The stage's alarms: what they watch (the two the original system recommended, each with its
//! `QueueName` dimension — required fix 10 — and the notify DLQ, where real-time updates that could
//! not be delivered wait) and their states.

use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use serde::{Deserialize, Serialize};

use super::explain;
use crate::names;

/// One alarm, as `PutMetricAlarm` receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmSpec {
    pub name: String,
    pub description: String,
    pub metric: &'static str,
    pub queue: String,
    pub statistic: Statistic,
    pub period: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison: ComparisonOperator,
    /// The stack that holds its queue, when a stage may not have it yet (the websocket stack's
    /// notify DLQ): the alarm is left out until the queue exists. `None`: the queue must exist.
    pub comes_with: Option<&'static str>,
}

/// `notesctl alarms --queue-depth-threshold`'s default.
pub const DEFAULT_QUEUE_DEPTH: f64 = 100.0;

/// The alarms for a stage: queue depth (Average > threshold over 2 × 5 min), dead-lettered notes
/// and dropped real-time updates (Sum ≥ 1 over 1 min), each on its own queue by `QueueName`.
pub fn alarm_specs(stage: &str, queue_depth_threshold: f64) -> Vec<AlarmSpec> {
    vec![
        AlarmSpec {
            name: format!("{stage}-notes-queue-depth-high"),
            description: format!(
                "Notes are piling up in {}: save-note is failing or too slow. Check `notesctl tail save` and `notesctl queue-depth`.",
                names::queue(stage)
            ),
            metric: "ApproximateNumberOfMessagesVisible",
            queue: names::queue(stage),
            statistic: Statistic::Average,
            period: 300,
            evaluation_periods: 2,
            threshold: queue_depth_threshold,
            comparison: ComparisonOperator::GreaterThanThreshold,
            comes_with: None,
        },
        AlarmSpec {
            name: format!("{stage}-notes-dlq-messages"),
            description: format!(
                "Notes were dead-lettered in {}. Inspect with `notesctl redrive-dlq --dry-run`, fix the cause, then redrive.",
                names::dlq(stage)
            ),
            metric: "ApproximateNumberOfMessagesVisible",
            queue: names::dlq(stage),
            statistic: Statistic::Sum,
            period: 60,
            evaluation_periods: 1,
            threshold: 1.0,
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            comes_with: None,
        },
        AlarmSpec {
            name: format!("{stage}-notify-dlq-messages"),
            description: format!(
                "Real-time updates could not be delivered and wait in {}: the notify rule or websocket-notify failed past their retries. Check `notesctl doctor` and `notesctl tail notify`.",
                names::notify_dlq(stage)
            ),
            metric: "ApproximateNumberOfMessagesVisible",
            queue: names::notify_dlq(stage),
            statistic: Statistic::Sum,
            period: 60,
            evaluation_periods: 1,
            threshold: 1.0,
            comparison: ComparisonOperator::GreaterThanOrEqualToThreshold,
            comes_with: Some("websocket"),
        },
    ]
}

/// An alarm and its state (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct AlarmState {
    pub name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AlarmState {
    pub fn firing(&self) -> bool {
        StateValue::from(self.state.as_str()) == StateValue::Alarm
    }
}

/// The states of those of the named alarms that exist, in the order asked.
pub async fn states(
    cw: &aws_sdk_cloudwatch::Client,
    names: &[String],
) -> anyhow::Result<Vec<AlarmState>> {
    let described = cw
        .describe_alarms()
        .set_alarm_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| explain("reading the alarms' states", &e))?;
    Ok(names
        .iter()
        .filter_map(|name| {
            let found = described
                .metric_alarms()
                .iter()
                .find(|a| a.alarm_name() == Some(name.as_str()))?;
            Some(AlarmState {
                name: name.clone(),
                state: found
                    .state_value()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                reason: found.state_reason().map(str::to_owned),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Required fix 10: every alarm names its queue; the seed's had no dimension and watched nothing.
    #[test]
    fn fix10_each_alarm_watches_its_own_queue() {
        let specs = alarm_specs("production", 100.0);
        assert_eq!(specs.len(), 3);
        let notify = &specs[2];
        assert_eq!(
            (notify.name.as_str(), notify.queue.as_str()),
            (
                "production-notify-dlq-messages",
                "production-websocket-notify-dlq"
            )
        );
        assert_eq!((notify.threshold, notify.period), (1.0, 60));
        assert_eq!(notify.comes_with, Some("websocket"));
        assert!(specs[..2].iter().all(|s| s.comes_with.is_none()));
        let depth = &specs[0];
        assert_eq!(depth.name, "production-notes-queue-depth-high");
        assert_eq!(depth.queue, "production-note-processing-queue");
        assert_eq!(
            (
                depth.statistic.clone(),
                depth.period,
                depth.evaluation_periods,
                depth.threshold
            ),
            (Statistic::Average, 300, 2, 100.0)
        );
        assert_eq!(depth.comparison, ComparisonOperator::GreaterThanThreshold);
        let dlq = &specs[1];
        assert_eq!(dlq.name, "production-notes-dlq-messages");
        assert_eq!(dlq.queue, "production-note-processing-dlq");
        assert_eq!(
            (
                dlq.statistic.clone(),
                dlq.period,
                dlq.evaluation_periods,
                dlq.threshold
            ),
            (Statistic::Sum, 60, 1, 1.0)
        );
        assert_eq!(
            dlq.comparison,
            ComparisonOperator::GreaterThanOrEqualToThreshold
        );
        assert_eq!(alarm_specs("x", 7.0)[0].threshold, 7.0);
    }
}
