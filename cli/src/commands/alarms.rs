//! `notesctl alarms`: the two alarms the seed recommended, this time watching something — each carries
//! the `QueueName` dimension (required fix 10; the seed's commands had none, so they matched no metric).
//! Idempotent: a second run updates them in place.

use std::fmt;

use aws_sdk_cloudwatch::types::Dimension;
use serde::{Deserialize, Serialize};

use crate::aws::alarms::{AlarmState, alarm_specs, states};
use crate::aws::{explain, queues};
use crate::context::Context;
use crate::output::{Exit, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct AlarmsArgs {
    /// Notify this SNS topic when an alarm fires (and when it recovers).
    #[arg(long, value_name = "ARN", conflicts_with = "email")]
    pub sns_topic_arn: Option<String>,
    /// Create the topic `{stage}-notes-alarms` and subscribe this address (confirm the email AWS sends).
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,
    /// Average visible messages in the processing queue above which it alarms.
    #[arg(long, value_name = "N", default_value_t = crate::aws::alarms::DEFAULT_QUEUE_DEPTH)]
    pub queue_depth_threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmsReport {
    pub alarms: Vec<AlarmState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// Alarms not made, and why (the notify DLQ's before the websocket stack is deployed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl Report for AlarmsReport {
    /// An alarm that fires is a problem the run found.
    fn exit(&self) -> Exit {
        Exit::problem_if(self.alarms.iter().any(AlarmState::firing))
    }
}

impl fmt::Display for AlarmsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in &self.alarms {
            writeln!(f, "{:<45} {}", a.name, a.state)?;
        }
        for s in &self.skipped {
            writeln!(f, "not made: {s}")?;
        }
        match &self.topic_arn {
            Some(t) => write!(f, "actions: {t}"),
            None => write!(
                f,
                "actions: none (pass --email or --sns-topic-arn to be told when they fire)"
            ),
        }
    }
}

/// The clients `alarms` talks to.
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub cw: aws_sdk_cloudwatch::Client,
}

pub async fn run(ctx: &Context, args: AlarmsArgs) -> anyhow::Result<AlarmsReport> {
    let config = ctx.aws().await?;
    let clients = Clients {
        sqs: aws_sdk_sqs::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        cw: aws_sdk_cloudwatch::Client::new(&config),
    };
    apply(&clients, ctx.stage(), &args).await
}

/// Creates or updates the alarms and reports their states.
pub async fn apply(
    clients: &Clients,
    stage: &str,
    args: &AlarmsArgs,
) -> anyhow::Result<AlarmsReport> {
    // An alarm on a queue that does not exist watches nothing: check first. A queue that comes
    // with a stack a stage may not have yet leaves its alarm out, said; any other must be there.
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for spec in alarm_specs(stage, args.queue_depth_threshold) {
        match (queues::lookup(&clients.sqs, &spec.queue).await, spec.comes_with) {
            (Ok(_), _) => specs.push(spec),
            (Err(e), Some(stack)) if queues::missing(&e) => skipped.push(format!(
                "{}: {} does not exist (the {stack} stack is not deployed); run `notesctl alarms` again after it is",
                spec.name, spec.queue
            )),
            (Err(e), _) => return Err(e),
        }
    }
    let topic_arn = match (&args.sns_topic_arn, &args.email) {
        (Some(arn), _) => Some(arn.clone()),
        (None, Some(email)) => {
            let topic = format!("{stage}-notes-alarms");
            let arn = clients
                .sns
                .create_topic()
                .name(&topic)
                .send()
                .await
                .map_err(|e| explain(&format!("creating the SNS topic {topic}"), &e))?
                .topic_arn
                .unwrap_or_default();
            clients
                .sns
                .subscribe()
                .topic_arn(&arn)
                .protocol("email")
                .endpoint(email)
                .send()
                .await
                .map_err(|e| explain(&format!("subscribing {email} to {topic}"), &e))?;
            Some(arn)
        }
        (None, None) => None,
    };
    for spec in &specs {
        clients
            .cw
            .put_metric_alarm()
            .alarm_name(&spec.name)
            .alarm_description(&spec.description)
            .namespace("AWS/SQS")
            .metric_name(spec.metric)
            .dimensions(
                Dimension::builder()
                    .name("QueueName")
                    .value(&spec.queue)
                    .build(),
            )
            .statistic(spec.statistic.clone())
            .period(spec.period)
            .evaluation_periods(spec.evaluation_periods)
            .threshold(spec.threshold)
            .comparison_operator(spec.comparison.clone())
            .treat_missing_data("notBreaching")
            .set_alarm_actions(topic_arn.clone().map(|t| vec![t]))
            .set_ok_actions(topic_arn.clone().map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| explain(&format!("creating alarm {}", spec.name), &e))?;
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let found = states(&clients.cw, &names).await?;
    let alarms = names
        .into_iter()
        .map(|name| {
            found
                .iter()
                .find(|a| a.name == name)
                .cloned()
                .unwrap_or(AlarmState {
                    name,
                    state: "UNKNOWN".into(),
                    reason: Some("CloudWatch does not list it after it was created".into()),
                })
        })
        .collect();
    Ok(AlarmsReport {
        alarms,
        topic_arn,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
    use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};
    use aws_sdk_sns::operation::create_topic::CreateTopicOutput;
    use aws_sdk_sns::operation::subscribe::SubscribeOutput;
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    /// CloudWatch as a tiny stateful fake on recorded responses (moto 5.2 does not speak the SDK's
    /// CBOR protocol for CloudWatch): PutMetricAlarm stores by name, DescribeAlarms reads back.
    #[tokio::test]
    async fn two_runs_leave_two_dimensioned_alarms_wired_to_the_topic() {
        let alarms: Arc<Mutex<BTreeMap<String, MetricAlarm>>> = Arc::default();
        let store = alarms.clone();
        let put =
            mock!(aws_sdk_cloudwatch::Client::put_metric_alarm).then_compute_output(move |req| {
                let alarm = MetricAlarm::builder()
                    .alarm_name(req.alarm_name().unwrap())
                    .namespace(req.namespace().unwrap())
                    .metric_name(req.metric_name().unwrap())
                    .set_dimensions(Some(req.dimensions().to_vec()))
                    .set_alarm_actions(Some(req.alarm_actions().to_vec()))
                    .set_statistic(req.statistic().cloned())
                    .set_threshold(req.threshold())
                    .set_period(req.period())
                    .set_evaluation_periods(req.evaluation_periods());
                // As CloudWatch does: a new alarm starts in INSUFFICIENT_DATA; an update replaces the
                // configuration and leaves the state as it was.
                let mut all = store.lock().unwrap();
                let state = all
                    .get(req.alarm_name().unwrap())
                    .and_then(|a| a.state_value().cloned())
                    .unwrap_or(StateValue::InsufficientData);
                all.insert(
                    req.alarm_name().unwrap().to_owned(),
                    alarm.state_value(state).build(),
                );
                PutMetricAlarmOutput::builder().build()
            });
        let read = alarms.clone();
        let describe =
            mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_compute_output(move |req| {
                let all = read.lock().unwrap();
                let found = req.alarm_names().iter().filter_map(|n| all.get(n).cloned());
                DescribeAlarmsOutput::builder()
                    .set_metric_alarms(Some(found.collect()))
                    .build()
            });
        let url = mock!(aws_sdk_sqs::Client::get_queue_url).then_compute_output(|r| {
            GetQueueUrlOutput::builder()
                .queue_url(format!("https://sqs/1/{}", r.queue_name().unwrap()))
                .build()
        });
        let topic = mock!(aws_sdk_sns::Client::create_topic).then_compute_output(|r| {
            CreateTopicOutput::builder()
                .topic_arn(format!("arn:aws:sns:eu-west-2:1:{}", r.name().unwrap()))
                .build()
        });
        let subscribe = mock!(aws_sdk_sns::Client::subscribe)
            .match_requests(|r| {
                r.protocol() == Some("email") && r.endpoint() == Some("oncall@example.com")
            })
            .then_output(|| {
                SubscribeOutput::builder()
                    .subscription_arn("pending confirmation")
                    .build()
            });
        let clients = Clients {
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&url]),
            sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&topic, &subscribe]),
            cw: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put, &describe]),
        };
        let args = AlarmsArgs {
            sns_topic_arn: None,
            email: Some("oncall@example.com".into()),
            queue_depth_threshold: 50.0,
        };
        let states = |r: &AlarmsReport| -> BTreeMap<String, String> {
            r.alarms
                .iter()
                .map(|a| (a.name.clone(), a.state.clone()))
                .collect()
        };
        let first = apply(&clients, "prod", &args).await.unwrap();
        assert_eq!(
            states(&first),
            BTreeMap::from([
                ("prod-notes-dlq-messages".into(), "INSUFFICIENT_DATA".into()),
                (
                    "prod-notes-queue-depth-high".into(),
                    "INSUFFICIENT_DATA".into()
                ),
                (
                    "prod-notify-dlq-messages".into(),
                    "INSUFFICIENT_DATA".into()
                ),
            ])
        );
        assert_eq!(first.exit(), Exit::Ok, "nothing fires yet");
        // Dead letters arrive: CloudWatch moves the DLQ alarm to ALARM between the runs.
        {
            let mut all = alarms.lock().unwrap();
            all.get_mut("prod-notes-dlq-messages").unwrap().state_value = Some(StateValue::Alarm);
        }
        let second = apply(&clients, "prod", &args).await.unwrap();
        assert_eq!(
            states(&second),
            BTreeMap::from([
                ("prod-notes-dlq-messages".into(), "ALARM".into()),
                (
                    "prod-notes-queue-depth-high".into(),
                    "INSUFFICIENT_DATA".into()
                ),
                (
                    "prod-notify-dlq-messages".into(),
                    "INSUFFICIENT_DATA".into()
                ),
            ]),
            "the state read back after the update, per alarm"
        );
        assert_eq!(second.exit(), Exit::Problem, "a firing alarm is exit 1");
        assert!(second.to_string().contains("ALARM"), "{second}");
        for report in [&first, &second] {
            assert_eq!(
                report.topic_arn.as_deref(),
                Some("arn:aws:sns:eu-west-2:1:prod-notes-alarms")
            );
        }
        let all = alarms.lock().unwrap();
        assert_eq!(all.len(), 3, "updated in place, not duplicated");
        for (name, queue) in [
            ("prod-notes-queue-depth-high", "prod-note-processing-queue"),
            ("prod-notes-dlq-messages", "prod-note-processing-dlq"),
            ("prod-notify-dlq-messages", "prod-websocket-notify-dlq"),
        ] {
            let a = &all[name];
            assert_eq!(a.namespace(), Some("AWS/SQS"));
            assert_eq!(a.metric_name(), Some("ApproximateNumberOfMessagesVisible"));
            assert_eq!(a.dimensions().len(), 1);
            assert_eq!(
                (a.dimensions()[0].name(), a.dimensions()[0].value()),
                (Some("QueueName"), Some(queue))
            );
            assert_eq!(
                a.alarm_actions(),
                ["arn:aws:sns:eu-west-2:1:prod-notes-alarms".to_owned()]
            );
        }
        assert_eq!(all["prod-notes-queue-depth-high"].threshold(), Some(50.0));
        assert_eq!(
            subscribe.num_calls(),
            2,
            "Subscribe is idempotent on SNS's side"
        );
    }
}

#[cfg(test)]
mod notify_dlq {
    use super::*;
    use crate::names;
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::operation::put_metric_alarm::PutMetricAlarmOutput;
    use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
    use aws_sdk_sqs::types::error::QueueDoesNotExist;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    /// A stage without its websocket stack has no notify DLQ yet: the notes' alarms are made, the
    /// notify DLQ's is not (an alarm on a missing queue watches nothing), and the report says so.
    #[tokio::test]
    async fn the_notify_dlq_alarm_waits_for_its_queue() {
        let notify = names::notify_dlq("prod");
        let (for_found, for_missing) = (notify.clone(), notify.clone());
        let found = mock!(aws_sdk_sqs::Client::get_queue_url)
            .match_requests(move |r| r.queue_name() != Some(for_found.as_str()))
            .then_compute_output(|r| {
                GetQueueUrlOutput::builder()
                    .queue_url(format!("https://sqs/1/{}", r.queue_name().unwrap()))
                    .build()
            });
        let missing = mock!(aws_sdk_sqs::Client::get_queue_url)
            .match_requests(move |r| r.queue_name() == Some(for_missing.as_str()))
            .then_error(|| {
                GetQueueUrlError::QueueDoesNotExist(QueueDoesNotExist::builder().build())
            });
        let put = mock!(aws_sdk_cloudwatch::Client::put_metric_alarm)
            .match_requests(|r| r.alarm_name() != Some("prod-notify-dlq-messages"))
            .then_output(|| PutMetricAlarmOutput::builder().build());
        let describe = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
            .then_output(|| DescribeAlarmsOutput::builder().build());
        let clients = Clients {
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&found, &missing]),
            sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, []),
            cw: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&put, &describe]),
        };
        let args = AlarmsArgs {
            sns_topic_arn: None,
            email: None,
            queue_depth_threshold: 100.0,
        };
        let report = apply(&clients, "prod", &args).await.unwrap();
        let made: Vec<&str> = report.alarms.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            made,
            ["prod-notes-queue-depth-high", "prod-notes-dlq-messages"]
        );
        assert_eq!(put.num_calls(), 2);
        assert_eq!(report.skipped.len(), 1);
        assert!(
            report.skipped[0]
                .starts_with("prod-notify-dlq-messages: prod-websocket-notify-dlq does not exist"),
            "{:?}",
            report.skipped
        );
        assert!(
            report
                .to_string()
                .contains("not made: prod-notify-dlq-messages")
        );
    }
}
