//! The processing queue and its dead-letter queue, found by name, and how many messages each holds.

use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use super::explain;
use crate::names;

/// SQS's answer for a queue that does not exist: `QueueDoesNotExist` (the JSON protocol's code), or
/// `AWS.SimpleQueueService.NonExistentQueue` (the query protocol's, which the SDK also maps to the
/// modeled error). The one place that reads it: any other failure is not "no such queue".
pub fn is_missing<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(
        err.code(),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

/// The error of a queue that does not exist, told apart from every other failure by its type.
#[derive(Debug, thiserror::Error)]
#[error(
    "queue {name} does not exist here: deploy the event stack first, or check --stage, --region and --endpoint-url"
)]
pub struct QueueMissing {
    pub name: String,
}

/// Whether `err` is (or wraps) [`QueueMissing`]: SQS said the queue does not exist.
pub fn missing(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<QueueMissing>())
}

/// A queue by name and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub name: String,
    pub url: String,
}

/// The queue named `name`, or an error that says what to deploy or check.
pub async fn lookup(sqs: &Client, name: &str) -> anyhow::Result<QueueRef> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(QueueRef {
            name: name.to_owned(),
            url: out.queue_url.unwrap_or_default(),
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist())
                || is_missing(&e) =>
        {
            Err(QueueMissing {
                name: name.to_owned(),
            }
            .into())
        }
        Err(e) => Err(explain(&format!("looking up queue {name}"), &e)),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    pub name: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct QueueDepth {
    pub queue: Depth,
    pub dlq: Depth,
    /// Why `--fail-above` failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<40} {:>9} {:>9} {:>9}",
            self.name, self.visible, self.in_flight, self.delayed
        )?;
        match self.oldest_age_seconds {
            Some(age) => write!(f, " {:>8}s", age),
            None => write!(f, " {:>9}", "-"),
        }
    }
}

impl fmt::Display for QueueDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>9} {:>9} {:>9} {:>9}",
            "QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST"
        )?;
        writeln!(f, "{}", self.queue)?;
        write!(f, "{}", self.dlq)?;
        if let Some(p) = &self.problem {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

async fn depth(sqs: &Client, queue: &QueueRef) -> anyhow::Result<Depth> {
    let out = match sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
    {
        Ok(out) => out,
        // Deleted since it was looked up.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist())
                || is_missing(&e) =>
        {
            return Err(QueueMissing {
                name: queue.name.clone(),
            }
            .into());
        }
        Err(e) => {
            return Err(explain(
                &format!("reading the attributes of {}", queue.name),
                &e,
            ));
        }
    };
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Depth {
        name: queue.name.clone(),
        visible: n(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        oldest_age_seconds: None,
    })
}

/// How many messages the queue named `name` holds now; `None` when SQS says there is no such queue
/// (only then: any other failure to read it is an error).
pub async fn depth_of(sqs: &Client, name: &str) -> anyhow::Result<Option<Depth>> {
    let found = match lookup(sqs, name).await {
        Ok(q) => q,
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    match depth(sqs, &found).await {
        Ok(d) => Ok(Some(d)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The age of the oldest message from CloudWatch, if it has a recent datapoint (it does not locally).
async fn oldest_age(cw: &aws_sdk_cloudwatch::Client, name: &str) -> Option<u64> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let now = std::time::SystemTime::now();
    let out = tokio::time::timeout(
        Duration::from_secs(2),
        cw.get_metric_statistics()
            .namespace("AWS/SQS")
            .metric_name("ApproximateAgeOfOldestMessage")
            .dimensions(Dimension::builder().name("QueueName").value(name).build())
            .start_time(DateTime::from(now - Duration::from_secs(600)))
            .end_time(DateTime::from(now))
            .period(60)
            .statistics(Statistic::Maximum)
            .send(),
    )
    .await
    .ok()?
    .ok()?;
    out.datapoints()
        .iter()
        .max_by_key(|d| d.timestamp().map(|t| t.secs()))
        .and_then(|d| d.maximum())
        .map(|m| m as u64)
}

/// The stage's processing queue and DLQ.
pub struct Queues {
    pub sqs: Client,
    cw: Option<aws_sdk_cloudwatch::Client>,
    pub queue: QueueRef,
    pub dlq: QueueRef,
}

impl Queues {
    /// Queues already resolved (tests, or callers that know the URLs).
    pub fn new(sqs: Client, queue: QueueRef, dlq: QueueRef) -> Queues {
        Queues {
            sqs,
            cw: None,
            queue,
            dlq,
        }
    }

    /// Finds the stage's queues by name. `local`: a `notesctl dev`, which has no CloudWatch.
    pub async fn find(
        config: &aws_config::SdkConfig,
        stage: &str,
        local: bool,
    ) -> anyhow::Result<Queues> {
        let sqs = Client::new(config);
        let (queue, dlq) = (names::queue(stage), names::dlq(stage));
        let (queue, dlq) = tokio::try_join!(lookup(&sqs, &queue), lookup(&sqs, &dlq))?;
        let cw = (!local).then(|| aws_sdk_cloudwatch::Client::new(config));
        Ok(Queues {
            sqs,
            cw,
            queue,
            dlq,
        })
    }

    pub async fn measure(&self) -> anyhow::Result<QueueDepth> {
        let ages = async {
            match &self.cw {
                Some(cw) => tokio::join!(
                    oldest_age(cw, &self.queue.name),
                    oldest_age(cw, &self.dlq.name)
                ),
                None => (None, None),
            }
        };
        let (q, d, (qa, da)) = tokio::join!(
            depth(&self.sqs, &self.queue),
            depth(&self.sqs, &self.dlq),
            ages
        );
        let (mut queue, mut dlq) = (q?, d?);
        queue.oldest_age_seconds = qa;
        dlq.oldest_age_seconds = da;
        Ok(QueueDepth {
            queue,
            dlq,
            problem: None,
        })
    }
}
