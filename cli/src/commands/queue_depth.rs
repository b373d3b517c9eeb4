//! `notesctl queue-depth`: the processing queue and its DLQ at a glance — visible, in flight, delayed
//! (and the oldest message's age where CloudWatch has it). Two concurrent calls instead of the AWS CLI's
//! two processes; `--watch` refreshes in place; `--fail-above N` gates CI.

use std::fmt;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use crate::aws::{LocalArg, explain, sdk_config};
use crate::{Exit, Global, Output, names, output};

#[derive(Debug, Clone, clap::Args)]
pub struct QueueDepthArgs {
    /// Refresh every --interval seconds until interrupted (in place on a terminal; JSON Lines with --output json).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Exit 1 when the processing queue or the DLQ holds more than N visible messages.
    #[arg(long, value_name = "N")]
    pub fail_above: Option<u64>,
    #[command(flatten)]
    pub local: LocalArg,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    pub name: String,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: Depth,
    pub dlq: Depth,
    /// Why `--fail-above` failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// `--fail-above`: the first queue over the limit, as a sentence.
pub fn over_limit(report: &QueueDepth, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    [&report.queue, &report.dlq]
        .into_iter()
        .find(|d| d.visible > limit)
        .map(|d| {
            format!(
                "{} holds {} visible messages, above --fail-above {limit}",
                d.name, d.visible
            )
        })
}

pub async fn queue_url(sqs: &Client, name: &str) -> anyhow::Result<String> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist()) =>
        {
            anyhow::bail!(
                "queue {name} does not exist here: deploy the event stack first, or check --stage, --region and --endpoint-url"
            )
        }
        Err(e) => Err(explain(&format!("looking up queue {name}"), &e)),
    }
}

async fn depth(sqs: &Client, name: &str, url: &str) -> anyhow::Result<Depth> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| explain(&format!("reading the attributes of {name}"), &e))?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Depth {
        name: name.to_owned(),
        visible: n(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        oldest_age_seconds: None,
    })
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

pub struct Queues {
    pub sqs: Client,
    cw: Option<aws_sdk_cloudwatch::Client>,
    pub queue: (String, String),
    pub dlq: (String, String),
}

impl Queues {
    /// Queues already resolved (tests, or callers that know the URLs).
    pub fn new(sqs: Client, queue: (String, String), dlq: (String, String)) -> Queues {
        Queues {
            sqs,
            cw: None,
            queue,
            dlq,
        }
    }

    pub async fn find(global: &Global, local: Option<&str>) -> anyhow::Result<Queues> {
        let config = sdk_config(global, local).await?;
        let sqs = Client::new(&config);
        let (qn, dn) = (names::queue(&global.stage), names::dlq(&global.stage));
        let (qu, du) = tokio::try_join!(queue_url(&sqs, &qn), queue_url(&sqs, &dn))?;
        let cw = local
            .is_none()
            .then(|| aws_sdk_cloudwatch::Client::new(&config));
        Ok(Queues {
            sqs,
            cw,
            queue: (qn, qu),
            dlq: (dn, du),
        })
    }

    pub async fn measure(&self) -> anyhow::Result<QueueDepth> {
        let ages = async {
            match &self.cw {
                Some(cw) => {
                    tokio::join!(oldest_age(cw, &self.queue.0), oldest_age(cw, &self.dlq.0))
                }
                None => (None, None),
            }
        };
        let (q, d, (qa, da)) = tokio::join!(
            depth(&self.sqs, &self.queue.0, &self.queue.1),
            depth(&self.sqs, &self.dlq.0, &self.dlq.1),
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

pub async fn run(global: &Global, args: QueueDepthArgs) -> anyhow::Result<Exit> {
    let queues = Queues::find(global, args.local.local.as_deref()).await?;
    if !args.watch {
        let mut report = queues.measure().await?;
        report.problem = over_limit(&report, args.fail_above);
        output::print(global.output, &report);
        return Ok(if report.problem.is_some() {
            Exit::Problem
        } else {
            Exit::Ok
        });
    }
    let terminal =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && global.output == Output::Text;
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    let mut drawn_lines = 0;
    loop {
        let mut report = queues.measure().await?;
        report.problem = over_limit(&report, args.fail_above);
        if terminal && drawn_lines > 0 {
            // Move up and clear what the previous refresh drew.
            print!("\x1b[{drawn_lines}A\x1b[J");
        }
        output::print(global.output, &report);
        drawn_lines = report.to_string().lines().count();
        if report.problem.is_some() && args.fail_above.is_some() {
            return Ok(Exit::Problem);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, visible: u64) -> Depth {
        Depth {
            name: name.into(),
            visible,
            in_flight: 0,
            delayed: 0,
            oldest_age_seconds: None,
        }
    }

    #[test]
    fn fail_above_names_the_queue() {
        let r = QueueDepth {
            queue: d("q", 5),
            dlq: d("dlq", 1),
            problem: None,
        };
        assert_eq!(over_limit(&r, None), None);
        assert_eq!(over_limit(&r, Some(5)), None);
        assert!(over_limit(&r, Some(4)).unwrap().starts_with("q holds 5"));
        assert!(over_limit(&r, Some(0)).unwrap().starts_with("q holds"));
        let r = QueueDepth {
            queue: d("q", 0),
            dlq: d("dlq", 2),
            problem: None,
        };
        assert!(over_limit(&r, Some(1)).unwrap().starts_with("dlq holds 2"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["queue"],
            serde_json::json!({"name":"q","visible":0,"inFlight":0,"delayed":0})
        );
    }
}
