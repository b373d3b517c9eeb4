//! `notesctl deploy`: the six stacks in dependency order, through change sets, with the change set's
//! summary first (`--preview` stops there), stack events streamed while it runs, and the failed
//! resources and their reasons when it fails — found even when a rollback already removed them.
//!
//! No changes is `unchanged` and exit 0 (the AWS CLI and SAM break pipelines there). The decision is
//! made by comparing the deployed template and parameters with ours before any change set, so it holds
//! against emulators that never report "no changes" too.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, TemplateStage,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::package::{Arch, sha256_hex};
use crate::aws::{explain, sdk_config};
use crate::{Exit, Global, output, stacks};

#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Where `notesctl package` wrote the zips.
    #[arg(long, default_value = "dist")]
    pub artifacts: PathBuf,
    /// The functions' architecture (the zip `notes-lambda-{arch}.zip` is deployed).
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub arch: Arch,
    /// Deploy only these stacks (event, data, auth, websocket, notes, frontend); repeatable.
    #[arg(long = "stack", value_name = "NAME")]
    pub stacks: Vec<String>,
    /// Show what would change and stop.
    #[arg(long)]
    pub preview: bool,
    /// Apply without asking (required when not on a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The CloudFormation templates.
    #[arg(long, default_value = "templates")]
    pub templates: PathBuf,
    /// After the stacks, sync this frontend folder and invalidate the CDN.
    #[arg(long, value_name = "DIR")]
    pub frontend: Option<PathBuf>,
    /// CORS origin allowed by the API.
    #[arg(long, default_value = "*")]
    pub allowed_origin: String,
    /// notes-save's timeout in seconds; the queue's visibility timeout is six times this.
    #[arg(long, default_value_t = 30)]
    pub save_timeout: u32,
    /// Bucket for the code zips (default: notesctl-artifacts-{account}-{region}, created if missing).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
}

/// What to do with a stack in a given state. Pure, and exhaustive over every status the SDK knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextAction {
    Create,
    Update,
    /// A first create failed and rolled back: the stack is empty and can only be deleted.
    DeleteAndRecreate,
    /// Something is running on the stack: wait for it to settle, then decide again.
    WaitThenRetry,
    /// The stack needs a person: the sentence says what to do.
    Blocked(String),
}

pub fn next_action(stack: &str, status: Option<&StackStatus>) -> NextAction {
    use StackStatus as S;
    let Some(status) = status else {
        return NextAction::Create;
    };
    match status {
        S::DeleteComplete => NextAction::Create,
        S::CreateComplete
        | S::UpdateComplete
        | S::UpdateRollbackComplete
        | S::ImportComplete
        | S::ImportRollbackComplete => NextAction::Update,
        // A first create failed and rolled back, or a create change set was never executed: either way
        // the stack holds no resources and is deleted before it is created again.
        S::RollbackComplete | S::ReviewInProgress => NextAction::DeleteAndRecreate,
        S::CreateInProgress
        | S::DeleteInProgress
        | S::RollbackInProgress
        | S::UpdateInProgress
        | S::UpdateCompleteCleanupInProgress
        | S::UpdateRollbackInProgress
        | S::UpdateRollbackCompleteCleanupInProgress
        | S::ImportInProgress
        | S::ImportRollbackInProgress => NextAction::WaitThenRetry,
        S::UpdateRollbackFailed => NextAction::Blocked(format!(
            "{stack} is UPDATE_ROLLBACK_FAILED: a resource could not be rolled back. Fix what its events name, then run `aws cloudformation continue-update-rollback --stack-name {stack}` (add `--resources-to-skip LogicalId` for a resource that cannot be restored), wait for UPDATE_ROLLBACK_COMPLETE, and deploy again"
        )),
        S::DeleteFailed => NextAction::Blocked(format!(
            "{stack} is DELETE_FAILED: a resource could not be deleted (a non-empty bucket, say). Remove it by hand or run `notesctl destroy --yes`, then deploy again"
        )),
        S::CreateFailed | S::RollbackFailed => NextAction::Blocked(format!(
            "{stack} is {}: its first create failed and could not be cleaned up. Delete it (`aws cloudformation delete-stack --stack-name {stack}`) and deploy again",
            status.as_str()
        )),
        S::UpdateFailed => NextAction::Blocked(format!(
            "{stack} is UPDATE_FAILED: wait for its rollback to finish, then deploy again"
        )),
        S::ImportRollbackFailed => NextAction::Blocked(format!(
            "{stack} is IMPORT_ROLLBACK_FAILED: an import could not be undone. Fix what its events name, then `aws cloudformation continue-update-rollback --stack-name {stack}`"
        )),
        other => NextAction::Blocked(format!(
            "{stack} is in {}, a status this notesctl does not know: check it in the console",
            other.as_str()
        )),
    }
}

/// The one unavoidable string match: CloudFormation says "no changes" only in a failed change set's
/// reason (or an UpdateStack error).
pub fn is_no_changes(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("didn't contain changes")
        || r.contains("no updates are to be performed")
        || r.contains("did not contain changes")
}

#[derive(Debug, Clone, Serialize)]
pub struct StackReport {
    pub name: String,
    pub action: &'static str,
    pub status: String,
    pub outputs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub stacks: Vec<StackReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl fmt::Display for DeployReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.stacks {
            writeln!(f, "{:<32} {:<10} {}", s.name, s.action, s.status)?;
            for fail in &s.failures {
                writeln!(
                    f,
                    "  ✗ {} ({}) {}: {}",
                    fail.logical_id, fail.resource_type, fail.status, fail.reason
                )?;
            }
        }
        if let Some(fe) = &self.frontend {
            writeln!(f, "frontend: {fe}")?;
        }
        if let Some(p) = &self.problem {
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Parameters a template declares, from its `Parameters` section.
pub fn declared_parameters(template: &str) -> anyhow::Result<Vec<String>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(template)?;
    Ok(doc["Parameters"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

struct Ctx<'a> {
    global: &'a Global,
    cfn: Client,
    args: &'a DeployArgs,
    values: BTreeMap<&'static str, String>,
    terminal: bool,
}

fn say(global: &Global, text: &str) {
    if !global.quiet {
        eprintln!("{text}");
    }
}

async fn describe(
    cfn: &Client,
    name: &str,
) -> anyhow::Result<Option<aws_sdk_cloudformation::types::Stack>> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.and_then(|s| s.into_iter().next())),
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(e) => Err(explain(&format!("describing {name}"), &e)),
    }
}

/// Waits (backing off, without a give-up time of our own) until the stack is in no *_IN_PROGRESS.
async fn settle(
    ctx: &Ctx<'_>,
    name: &str,
    since: Option<aws_sdk_cloudformation::primitives::DateTime>,
) -> anyhow::Result<Option<aws_sdk_cloudformation::types::Stack>> {
    let mut delay = Duration::from_millis(500);
    let mut seen = std::collections::HashSet::new();
    let started = std::time::Instant::now();
    loop {
        let waited = started.elapsed();
        let stack = describe(&ctx.cfn, name).await?;
        if let Some(since) = since {
            print_new_events(ctx, name, since, &mut seen).await;
        }
        // Right after ExecuteChangeSet a new stack may still say REVIEW_IN_PROGRESS for a moment.
        let status = stack.as_ref().and_then(|s| s.stack_status());
        let starting = since.is_some()
            && status == Some(&StackStatus::ReviewInProgress)
            && waited < Duration::from_secs(60);
        let busy = starting
            || status.is_some_and(|s| {
                s.as_str().ends_with("_IN_PROGRESS") && *s != StackStatus::ReviewInProgress
            });
        if !busy {
            return Ok(stack);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    }
}

async fn events_since(
    cfn: &Client,
    name: &str,
    since: aws_sdk_cloudformation::primitives::DateTime,
) -> Vec<aws_sdk_cloudformation::types::StackEvent> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = cfn
            .describe_stack_events()
            .stack_name(name)
            .set_next_token(token)
            .send()
            .await
        else {
            break;
        };
        let mut older = false;
        for e in page.stack_events() {
            if e.timestamp().is_some_and(|t| t.secs() < since.secs()) {
                older = true;
            } else {
                out.push(e.clone());
            }
        }
        match page.next_token {
            Some(t) if !older => token = Some(t),
            _ => break,
        }
    }
    out.reverse();
    out
}

async fn print_new_events(
    ctx: &Ctx<'_>,
    name: &str,
    since: aws_sdk_cloudformation::primitives::DateTime,
    seen: &mut std::collections::HashSet<String>,
) {
    for e in events_since(&ctx.cfn, name, since).await {
        if !seen.insert(e.event_id().unwrap_or_default().to_owned()) {
            continue;
        }
        let time = e
            .timestamp()
            .map(|t| notes_handlers::domain::clock::iso_millis(t.to_millis().unwrap_or(0)))
            .unwrap_or_default();
        say(
            ctx.global,
            &format!(
                "{} {:<28} {:<36} {}{}",
                time.get(11..19).unwrap_or(""),
                e.resource_status().map(|s| s.as_str()).unwrap_or(""),
                e.logical_resource_id().unwrap_or(""),
                e.resource_type().unwrap_or(""),
                e.resource_status_reason()
                    .map(|r| format!("  {r}"))
                    .unwrap_or_default()
            ),
        );
    }
}

/// The failed resources of the run that started at `since`, with their reasons.
async fn failures(
    cfn: &Client,
    name: &str,
    since: aws_sdk_cloudformation::primitives::DateTime,
) -> Vec<Failure> {
    events_since(cfn, name, since)
        .await
        .into_iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .filter(|e| {
            !e.resource_status_reason().is_some_and(|r| {
                r.contains("Resource creation cancelled") || r.contains("Resource update cancelled")
            })
        })
        .map(|e| Failure {
            logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
            resource_type: e.resource_type().unwrap_or_default().to_owned(),
            status: e
                .resource_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            reason: e
                .resource_status_reason()
                .unwrap_or("no reason given")
                .to_owned(),
        })
        .collect()
}

fn confirm(ctx: &Ctx<'_>, what: &str) -> anyhow::Result<()> {
    if ctx.args.yes {
        return Ok(());
    }
    if !ctx.terminal {
        anyhow::bail!(
            "refusing to {what} without confirmation: pass --yes (stdin is not a terminal)"
        );
    }
    eprint!("{what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("not confirmed; nothing changed")
    }
}

async fn deployed_matches(
    cfn: &Client,
    name: &str,
    stack: &aws_sdk_cloudformation::types::Stack,
    body: &str,
    params: &[Parameter],
) -> bool {
    let Ok(t) = cfn
        .get_template()
        .stack_name(name)
        .template_stage(TemplateStage::Original)
        .send()
        .await
    else {
        return false;
    };
    let same_body = t
        .template_body()
        .map(|b| b.trim() == body.trim())
        .unwrap_or(false);
    let deployed: BTreeMap<&str, &str> = stack
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?, p.parameter_value().unwrap_or(""))))
        .collect();
    let ours: BTreeMap<&str, &str> = params
        .iter()
        .filter_map(|p| Some((p.parameter_key()?, p.parameter_value().unwrap_or(""))))
        .collect();
    same_body && deployed == ours
}

async fn deploy_stack(ctx: &Ctx<'_>, short: &str) -> anyhow::Result<StackReport> {
    let name = stacks::stack_name(&ctx.global.stage, short);
    let path = ctx.args.templates.join(format!("{short}.yaml"));
    let body = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}; pass --templates DIR", path.display()))?;
    let params: Vec<Parameter> = declared_parameters(&body)?
        .into_iter()
        .filter_map(|k| {
            ctx.values.get(k.as_str()).map(|v| {
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build()
            })
        })
        .collect();
    let mut stack = settle(ctx, &name, None).await?;
    let mut action = next_action(&name, stack.as_ref().and_then(|s| s.stack_status()));
    if action == NextAction::DeleteAndRecreate {
        let review =
            stack.as_ref().and_then(|s| s.stack_status()) == Some(&StackStatus::ReviewInProgress);
        if !review {
            confirm(ctx, &format!("{name} is ROLLBACK_COMPLETE (its first create failed); delete it and create it again"))
                .map_err(|e| anyhow::anyhow!("{e}. {name} is ROLLBACK_COMPLETE: rerun with --yes to delete and recreate it"))?;
        }
        say(
            ctx.global,
            &format!(
                "{name}: deleting the {} stack",
                if review { "never-created" } else { "failed" }
            ),
        );
        ctx.cfn
            .delete_stack()
            .stack_name(&name)
            .send()
            .await
            .map_err(|e| explain(&format!("deleting {name}"), &e))?;
        stack = settle(ctx, &name, None).await?;
        action = next_action(&name, stack.as_ref().and_then(|s| s.stack_status()));
    }
    let change_type = match action {
        NextAction::Create => ChangeSetType::Create,
        NextAction::Update => ChangeSetType::Update,
        NextAction::Blocked(why) => {
            return Ok(StackReport {
                name,
                action: "failed",
                status: stack
                    .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
                    .unwrap_or_default(),
                outputs: BTreeMap::new(),
                failures: vec![Failure {
                    logical_id: String::new(),
                    resource_type: "AWS::CloudFormation::Stack".into(),
                    status: "BLOCKED".into(),
                    reason: why,
                }],
            });
        }
        other => anyhow::bail!("{name}: unexpected next action {other:?} after waiting"),
    };
    if change_type == ChangeSetType::Update
        && let Some(s) = &stack
        && deployed_matches(&ctx.cfn, &name, s, &body, &params).await
    {
        return Ok(StackReport {
            name,
            action: "unchanged",
            status: s
                .stack_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            outputs: outputs_of(s),
            failures: vec![],
        });
    }
    let set_name = format!("notesctl-{}", notes_handlers::domain::clock::now_millis());
    ctx.cfn
        .create_change_set()
        .stack_name(&name)
        .change_set_name(&set_name)
        .change_set_type(change_type.clone())
        .template_body(&body)
        .set_parameters(Some(params.clone()))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .description(format!("notesctl deploy of {short}"))
        .send()
        .await
        .map_err(|e| explain(&format!("creating a change set for {name}"), &e))?;
    // Wait for the change set.
    let mut delay = Duration::from_millis(300);
    let set = loop {
        let set = ctx
            .cfn
            .describe_change_set()
            .stack_name(&name)
            .change_set_name(&set_name)
            .send()
            .await
            .map_err(|e| explain(&format!("reading the change set of {name}"), &e))?;
        match set.status() {
            Some(ChangeSetStatus::CreateComplete) => break set,
            Some(ChangeSetStatus::Failed) => {
                let reason = set.status_reason().unwrap_or_default().to_owned();
                let _ = ctx
                    .cfn
                    .delete_change_set()
                    .stack_name(&name)
                    .change_set_name(&set_name)
                    .send()
                    .await;
                if is_no_changes(&reason) {
                    let s = describe(&ctx.cfn, &name).await?;
                    return Ok(StackReport {
                        name,
                        action: "unchanged",
                        status: s
                            .as_ref()
                            .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
                            .unwrap_or_default(),
                        outputs: s.as_ref().map(outputs_of).unwrap_or_default(),
                        failures: vec![],
                    });
                }
                anyhow::bail!("the change set for {name} failed: {reason}");
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(3));
    };
    say(
        ctx.global,
        &format!(
            "{name}: {} change set",
            if change_type == ChangeSetType::Create {
                "create"
            } else {
                "update"
            }
        ),
    );
    for c in set.changes() {
        if let Some(rc) = c.resource_change() {
            say(
                ctx.global,
                &format!(
                    "  {:<7} {:<36} {}{}",
                    rc.action().map(|a| a.as_str()).unwrap_or(""),
                    rc.logical_resource_id().unwrap_or(""),
                    rc.resource_type().unwrap_or(""),
                    rc.replacement()
                        .filter(|r| r.as_str() == "True")
                        .map(|_| "  (replacement)")
                        .unwrap_or("")
                ),
            );
        }
    }
    if ctx.args.preview {
        let _ = ctx
            .cfn
            .delete_change_set()
            .stack_name(&name)
            .change_set_name(&set_name)
            .send()
            .await;
        if change_type == ChangeSetType::Create {
            // The review-only stack a create change set leaves behind.
            let _ = ctx.cfn.delete_stack().stack_name(&name).send().await;
        }
        return Ok(StackReport {
            name,
            action: "preview",
            status: "PREVIEW".into(),
            outputs: BTreeMap::new(),
            failures: vec![],
        });
    }
    confirm(ctx, &format!("apply these changes to {name}"))?;
    let started = aws_sdk_cloudformation::primitives::DateTime::from(
        std::time::SystemTime::now() - Duration::from_secs(2),
    );
    if let Err(e) = ctx
        .cfn
        .execute_change_set()
        .stack_name(&name)
        .change_set_name(&set_name)
        .send()
        .await
    {
        // Refused outright (an unknown export, a missing capability): a failed deploy of this stack.
        let reason = e
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:#}", explain("executing the change set", &e)));
        let status = describe(&ctx.cfn, &name)
            .await?
            .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
            .unwrap_or_default();
        return Ok(StackReport {
            name: name.clone(),
            action: "failed",
            status,
            outputs: BTreeMap::new(),
            failures: vec![Failure {
                logical_id: name,
                resource_type: "AWS::CloudFormation::Stack".into(),
                status: "EXECUTE_FAILED".into(),
                reason,
            }],
        });
    }
    let done = settle(ctx, &name, Some(started)).await?;
    let status = done.as_ref().and_then(|s| s.stack_status()).cloned();
    let ok = matches!(
        status,
        Some(StackStatus::CreateComplete | StackStatus::UpdateComplete)
    );
    let status_text = status
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|| "DELETE_COMPLETE".into());
    if ok {
        let done = done.expect("a completed stack exists");
        return Ok(StackReport {
            name,
            action: if change_type == ChangeSetType::Create {
                "created"
            } else {
                "updated"
            },
            status: status_text,
            outputs: outputs_of(&done),
            failures: vec![],
        });
    }
    let mut failed = failures(&ctx.cfn, &name, started).await;
    if failed.is_empty() {
        failed.push(Failure {
            logical_id: name.clone(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            status: status_text.clone(),
            reason: done
                .as_ref()
                .and_then(|s| s.stack_status_reason())
                .unwrap_or("no reason given")
                .to_owned(),
        });
    }
    Ok(StackReport {
        name,
        action: "failed",
        status: status_text,
        outputs: BTreeMap::new(),
        failures: failed,
    })
}

fn outputs_of(stack: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect()
}

/// Uploads the zip to the artifacts bucket under its sha256 (once); the bucket and key.
async fn upload_code(
    global: &Global,
    config: &aws_config::SdkConfig,
    args: &DeployArgs,
) -> anyhow::Result<(String, String)> {
    let path = args
        .artifacts
        .join(format!("notes-lambda-{}.zip", args.arch.as_str()));
    let zip = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; run `notesctl package --arch {}` first",
            path.display(),
            args.arch.as_str()
        )
    })?;
    let key = format!("notes-lambda/{}.zip", sha256_hex(&zip));
    let bucket = match &args.artifacts_bucket {
        Some(b) => b.clone(),
        None => {
            let who = aws_sdk_sts::Client::new(config)
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| explain("finding the AWS account", &e))?;
            let region = config.region().map(|r| r.to_string()).unwrap_or_default();
            format!(
                "notesctl-artifacts-{}-{region}",
                who.account().unwrap_or("unknown")
            )
        }
    };
    let s3 = super::sync_frontend::s3_client(config, global.endpoint_url.is_some());
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        say(global, &format!("creating the artifacts bucket {bucket}"));
        let mut create = s3.create_bucket().bucket(&bucket);
        if let Some(region) = config
            .region()
            .map(|r| r.to_string())
            .filter(|r| r != "us-east-1")
        {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        region.as_str(),
                    ))
                    .build(),
            );
        }
        create
            .send()
            .await
            .map_err(|e| explain(&format!("creating bucket {bucket}"), &e))?;
        let block = aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .block_public_policy(true)
            .ignore_public_acls(true)
            .restrict_public_buckets(true)
            .build();
        let _ = s3
            .put_public_access_block()
            .bucket(&bucket)
            .public_access_block_configuration(block)
            .send()
            .await;
    }
    if s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .is_err()
    {
        say(
            global,
            &format!("uploading {} to s3://{bucket}/{key}", path.display()),
        );
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .body(zip.into())
            .send()
            .await
            .map_err(|e| explain(&format!("uploading the code to s3://{bucket}/{key}"), &e))?;
    }
    Ok((bucket, key))
}

/// The stacks to deploy, in dependency order.
pub fn selected(requested: &[String]) -> anyhow::Result<Vec<&'static str>> {
    for r in requested {
        if !stacks::STACKS.contains(&r.as_str()) {
            anyhow::bail!(
                "--stack {r}: no such stack; use one of {}",
                stacks::STACKS.join(", ")
            );
        }
    }
    Ok(stacks::STACKS
        .iter()
        .copied()
        .filter(|s| requested.is_empty() || requested.iter().any(|r| r == s))
        .collect())
}

pub async fn run(global: &Global, args: DeployArgs) -> anyhow::Result<Exit> {
    let config = sdk_config(global, None).await?;
    let order = selected(&args.stacks)?;
    let needs_code = order
        .iter()
        .any(|s| matches!(*s, "auth" | "websocket" | "notes"));
    let mut values = BTreeMap::from([
        ("Stage", global.stage.clone()),
        ("Architecture", args.arch.as_str().to_owned()),
        ("AllowedOrigin", args.allowed_origin.clone()),
        ("SaveFunctionTimeout", args.save_timeout.to_string()),
    ]);
    if needs_code && !args.preview {
        let (bucket, key) = upload_code(global, &config, &args).await?;
        values.insert("CodeBucket", bucket);
        values.insert("CodeKey", key);
    } else if needs_code {
        values.insert("CodeBucket", "preview".into());
        values.insert("CodeKey", "preview".into());
    }
    let ctx = Ctx {
        global,
        cfn: Client::new(&config),
        args: &args,
        values,
        terminal: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
    };
    let mut report = DeployReport {
        stacks: Vec::new(),
        frontend: None,
        problem: None,
    };
    for short in order {
        let r = deploy_stack(&ctx, short).await?;
        let failed = r.action == "failed";
        report.stacks.push(r);
        if failed {
            report.problem = Some(format!(
                "deploy stopped at {}: the stacks after it were not touched",
                stacks::stack_name(&global.stage, short)
            ));
            output::print(global.output, &report);
            return Ok(Exit::Problem);
        }
    }
    if let (Some(dir), false) = (&args.frontend, args.preview) {
        let sync_args = super::sync_frontend::SyncArgs {
            dir: dir.clone(),
            bucket: None,
            delete: true,
            dry_run: false,
            force: false,
            concurrency: 16,
            no_config: false,
            exclude: Vec::new(),
            api_url: None,
            ws_url: None,
        };
        let synced = super::sync_frontend::sync(global, &config, &sync_args).await?;
        let inv_args = super::invalidate::InvalidateArgs {
            distribution_id: None,
            paths: vec!["/*".into()],
            wait: true,
            timeout: Duration::from_secs(900),
            bucket: Some(synced.bucket.clone()),
        };
        let invalidated = super::invalidate::invalidate(
            global,
            &config,
            &inv_args,
            Some(synced.content_hash.clone()),
        )
        .await?;
        let problem = invalidated.problem.clone();
        report.frontend = Some(serde_json::json!({"sync": synced, "invalidation": invalidated}));
        if let Some(p) = problem {
            report.problem = Some(p);
            output::print(global.output, &report);
            return Ok(Exit::Problem);
        }
    }
    output::print(global.output, &report);
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status the SDK knows has a decision, and the ones that matter have the right one.
    #[test]
    fn next_action_covers_every_status() {
        for s in StackStatus::values() {
            let status = StackStatus::from(*s);
            let action = next_action("p-event-stack", Some(&status));
            assert!(
                !matches!(action, NextAction::Blocked(ref why) if why.contains("does not know")),
                "{s} is unhandled"
            );
            let expected_kind = match *s {
                "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE"
                | "IMPORT_COMPLETE"
                | "IMPORT_ROLLBACK_COMPLETE" => "update",
                "DELETE_COMPLETE" => "create",
                "ROLLBACK_COMPLETE" | "REVIEW_IN_PROGRESS" => "recreate",
                s if s.ends_with("_IN_PROGRESS") => "wait",
                _ => "blocked",
            };
            let kind = match action {
                NextAction::Create => "create",
                NextAction::Update => "update",
                NextAction::DeleteAndRecreate => "recreate",
                NextAction::WaitThenRetry => "wait",
                NextAction::Blocked(_) => "blocked",
            };
            assert_eq!(kind, expected_kind, "{s}");
        }
        assert_eq!(next_action("x", None), NextAction::Create);
        match next_action("p-notes-stack", Some(&StackStatus::UpdateRollbackFailed)) {
            NextAction::Blocked(why) => assert!(
                why.contains("continue-update-rollback --stack-name p-notes-stack"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(next_action("x", Some(&StackStatus::from("SOMETHING_NEW"))), NextAction::Blocked(ref w) if w.contains("does not know"))
        );
    }

    #[test]
    fn no_changes_is_recognised_in_both_phrasings() {
        assert!(is_no_changes(
            "The submitted information didn't contain changes. Submit different information to create a change set."
        ));
        assert!(is_no_changes("No updates are to be performed."));
        assert!(!is_no_changes(
            "Template format error: Unresolved resource dependencies [X]"
        ));
    }

    #[test]
    fn templates_declare_what_they_take_and_stacks_come_in_order() {
        let t = "Parameters:\n  Stage:\n    Type: String\n  CodeKey:\n    Type: String\nResources: {}\n";
        assert_eq!(declared_parameters(t).unwrap(), vec!["Stage", "CodeKey"]);
        assert_eq!(
            selected(&["notes".into(), "event".into()]).unwrap(),
            vec!["event", "notes"]
        );
        assert_eq!(selected(&[]).unwrap().len(), 6);
        assert!(selected(&["nope".into()]).is_err());
    }
}
