//! `outputs`, `ws-url`, `destroy` and `status`: reading and removing what `deploy` made.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::StackStatus;
use serde::Serialize;

use crate::aws::{explain, sdk_config};
use crate::{Exit, Global, names, output, stacks};

#[derive(Debug, Clone, clap::Args)]
pub struct OutputsArgs {
    /// Only these stacks (event, data, auth, websocket, notes, frontend); repeatable.
    #[arg(long = "stack", value_name = "NAME")]
    pub stacks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct OutputsReport(pub BTreeMap<String, BTreeMap<String, String>>);

impl fmt::Display for OutputsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (stack, outs) in &self.0 {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{stack}")?;
            for (k, v) in outs {
                write!(f, "\n  {k:<28} {v}")?;
            }
        }
        Ok(())
    }
}

pub async fn outputs(global: &Global, args: OutputsArgs) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let cfn = Client::new(&config);
    let wanted = super::deploy::selected(&args.stacks)?;
    let mut all = BTreeMap::new();
    for short in wanted {
        let name = stacks::stack_name(&global.stage, short);
        match stacks::outputs(&cfn, &name).await? {
            Some(o) => {
                all.insert(name, o);
            }
            None if !args.stacks.is_empty() => anyhow::bail!(
                "stack {name} does not exist: deploy it first, or check --stage and --region"
            ),
            None => {}
        }
    }
    if all.is_empty() {
        anyhow::bail!(
            "no {}-*-stack exists here: deploy first, or check --stage and --region",
            global.stage
        );
    }
    output::print(global.output, &OutputsReport(all));
    Ok(Exit::Ok)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WsUrl {
    pub web_socket_url: String,
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.web_socket_url)
    }
}

/// The WebSocket URL alone, for scripts: `wscat -c "$(notesctl ws-url)?token=…"`.
pub async fn ws_url(global: &Global) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let url = stacks::output(
        &Client::new(&config),
        &global.stage,
        "websocket",
        "WebSocketUrl",
        "--stage",
    )
    .await?;
    output::print(
        global.output,
        &WsUrl {
            web_socket_url: url,
        },
    );
    Ok(Exit::Ok)
}

#[derive(Debug, Clone, clap::Args)]
pub struct DestroyArgs {
    /// Delete without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The code artifacts bucket, if not the default (`notesctl-artifacts-{account}-{region}`); this
    /// stage's zips are deleted from it.
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestroyReport {
    pub deleted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<String>,
}

impl fmt::Display for DestroyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() {
            write!(f, "nothing to delete")?;
        } else {
            write!(f, "deleted: {}", self.deleted.join(", "))?;
        }
        if !self.retained.is_empty() {
            write!(
                f,
                "\nretained by DeletionPolicy: {} (delete by hand if you mean it)",
                self.retained.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Deletes every object of a bucket (the frontend's, the artifacts'), so its stack can delete it.
pub async fn empty_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: Option<&str>,
) -> anyhow::Result<usize> {
    let objects: Vec<_> = super::sync_frontend::list_bucket(s3, bucket)
        .await?
        .into_iter()
        .filter(|o| prefix.is_none_or(|p| o.key.starts_with(p)))
        .collect();
    for chunk in objects.chunks(1000) {
        let ids = chunk
            .iter()
            .map(|o| {
                aws_sdk_s3::types::ObjectIdentifier::builder()
                    .key(&o.key)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(
                aws_sdk_s3::types::Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| explain(&format!("emptying s3://{bucket}"), &e))?;
        if let Some(err) = out.errors().first() {
            anyhow::bail!(
                "could not delete s3://{bucket}/{}: {}",
                err.key().unwrap_or("?"),
                err.message().unwrap_or("no reason given")
            );
        }
    }
    Ok(objects.len())
}

pub async fn destroy(global: &Global, args: DestroyArgs) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let cfn = Client::new(&config);
    let s3 = super::sync_frontend::s3_client(&config, global.endpoint_url.is_some());
    let mut present = Vec::new();
    for short in stacks::STACKS.iter().rev() {
        let name = stacks::stack_name(&global.stage, short);
        if stacks::outputs(&cfn, &name).await?.is_some() {
            present.push((*short, name));
        }
    }
    let mut report = DestroyReport {
        deleted: Vec::new(),
        retained: Vec::new(),
    };
    if present.is_empty() {
        output::print(global.output, &report);
        return Ok(Exit::Ok);
    }
    if !args.yes {
        let terminal = std::env::var_os("CI").is_none()
            && std::io::IsTerminal::is_terminal(&std::io::stdin())
            && std::io::IsTerminal::is_terminal(&std::io::stderr());
        if !terminal {
            anyhow::bail!(
                "refusing to delete {} stacks without confirmation: pass --yes (no terminal to ask on)",
                present.len()
            );
        }
        eprint!(
            "Delete {}? [y/N] ",
            present
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("not confirmed; nothing deleted");
        }
    }
    if present.iter().any(|(s, _)| *s == "frontend")
        && let Ok(bucket) =
            stacks::output(&cfn, &global.stage, "frontend", "BucketName", "--stage").await
    {
        let n = empty_bucket(&s3, &bucket, None).await?;
        if !global.quiet {
            eprintln!("emptied s3://{bucket} ({n} objects)");
        }
    }
    // This stage's code zips (other stages share the bucket and keep theirs).
    if let Ok(bucket) =
        super::deploy::artifacts_bucket(&config, args.artifacts_bucket.as_deref()).await
        && s3.head_bucket().bucket(&bucket).send().await.is_ok()
    {
        let n = empty_bucket(&s3, &bucket, Some(&format!("{}/", global.stage))).await?;
        if n > 0 && !global.quiet {
            eprintln!(
                "deleted this stage's {n} code zips from s3://{bucket}/{}/",
                global.stage
            );
        }
    }
    for (short, name) in &present {
        if !global.quiet {
            eprintln!("deleting {name}");
        }
        cfn.delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| explain(&format!("deleting {name}"), &e))?;
        let mut delay = Duration::from_millis(500);
        loop {
            let status = match cfn.describe_stacks().stack_name(name).send().await {
                Ok(out) => out.stacks().first().and_then(|s| s.stack_status().cloned()),
                Err(e)
                    if aws_smithy_types::error::metadata::ProvideErrorMetadata::message(&e)
                        .is_some_and(|m| m.contains("does not exist")) =>
                {
                    None
                }
                // Throttled or a blip: keep waiting rather than move on while the stack still exists.
                Err(_) => Some(StackStatus::DeleteInProgress),
            };
            match status {
                None | Some(StackStatus::DeleteComplete) => break,
                Some(StackStatus::DeleteFailed) => anyhow::bail!(
                    "deleting {name} failed: see its events (`aws cloudformation describe-stack-events --stack-name {name}`), fix what they name, and run destroy again"
                ),
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
        report.deleted.push(name.clone());
        if *short == "data" {
            report.retained.push(format!("{}-data-table", global.stage));
        }
    }
    output::print(global.output, &report);
    Ok(Exit::Ok)
}

#[derive(Debug, Clone, Serialize)]
pub struct StackState {
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub stacks: Vec<StackState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<super::queue_depth::QueueDepth>,
    pub alarms: Vec<super::alarms::AlarmState>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "STACKS")?;
        for s in &self.stacks {
            writeln!(f, "  {:<34} {}", s.name, s.status)?;
        }
        if let Some(q) = &self.queues {
            writeln!(f, "QUEUES")?;
            for line in q.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        writeln!(f, "ALARMS")?;
        if self.alarms.is_empty() {
            writeln!(f, "  none (create them with `notesctl alarms`)")?;
        }
        for a in &self.alarms {
            writeln!(f, "  {:<45} {}", a.name, a.state)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// One screen: stacks, queue depths and alarm states. Exit 1 if a stack failed or an alarm fires.
pub async fn status(global: &Global) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let cfn = Client::new(&config);
    let mut report = StatusReport {
        stacks: Vec::new(),
        queues: None,
        alarms: Vec::new(),
        notes: Vec::new(),
    };
    for short in stacks::STACKS {
        let name = stacks::stack_name(&global.stage, short);
        let status = match cfn.describe_stacks().stack_name(&name).send().await {
            Ok(out) => out
                .stacks()
                .first()
                .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
                .unwrap_or_else(|| "NOT_DEPLOYED".into()),
            Err(e)
                if aws_smithy_types::error::metadata::ProvideErrorMetadata::message(&e)
                    .is_some_and(|m| m.contains("does not exist")) =>
            {
                "NOT_DEPLOYED".into()
            }
            // No credentials, throttling, the wrong endpoint: not "not deployed".
            Err(e) => return Err(explain(&format!("describing {name}"), &e)),
        };
        report.stacks.push(StackState { name, status });
    }
    match super::queue_depth::Queues::find(global, None).await {
        Ok(q) => match q.measure().await {
            Ok(m) => report.queues = Some(m),
            Err(e) => report.notes.push(format!("queues: {e:#}")),
        },
        Err(e) => report.notes.push(format!("queues: {e:#}")),
    }
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let names: Vec<String> = super::alarms::alarm_specs(&global.stage, 100.0)
        .into_iter()
        .map(|s| s.name)
        .collect();
    match cw
        .describe_alarms()
        .set_alarm_names(Some(names))
        .send()
        .await
    {
        Ok(out) => {
            report.alarms = out
                .metric_alarms()
                .iter()
                .map(|a| super::alarms::AlarmState {
                    name: a.alarm_name().unwrap_or_default().to_owned(),
                    state: a
                        .state_value()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    reason: a.state_reason().map(str::to_owned),
                })
                .collect()
        }
        Err(e) => report
            .notes
            .push(format!("alarms: {:#}", explain("reading alarms", &e))),
    }
    let bad_stack = report
        .stacks
        .iter()
        .any(|s| s.status.contains("FAILED") || s.status.contains("ROLLBACK"));
    let firing = report.alarms.iter().any(|a| a.state == "ALARM");
    let dlq = report.queues.as_ref().is_some_and(|q| q.dlq.visible > 0);
    if dlq {
        report.notes.push(format!(
            "{} holds dead letters: `notesctl redrive-dlq --dry-run`",
            names::dlq(&global.stage)
        ));
    }
    output::print(global.output, &report);
    Ok(if bad_stack || firing {
        Exit::Problem
    } else {
        Exit::Ok
    })
}
