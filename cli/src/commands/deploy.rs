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
    /// The change set's resource changes (what `--preview` shows).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub action: String,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub replacement: bool,
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
pub fn declared_parameters(template: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(template)?;
    let Some(params) = doc["Parameters"].as_mapping() else {
        return Ok(Vec::new());
    };
    Ok(params
        .iter()
        .filter_map(|(k, v)| {
            let default = match &v["Default"] {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            Some((k.as_str()?.to_owned(), default))
        })
        .collect())
}

/// What the stack's parameters will be: ours where we pass one, the template's default elsewhere.
pub fn expected_parameters(
    declared: &[(String, Option<String>)],
    values: &BTreeMap<&'static str, String>,
) -> BTreeMap<String, String> {
    declared
        .iter()
        .filter_map(|(k, default)| {
            values
                .get(k.as_str())
                .cloned()
                .or_else(|| default.clone())
                .map(|v| (k.clone(), v))
        })
        .collect()
}

struct Ctx<'a> {
    global: &'a Global,
    cfn: Client,
    args: &'a DeployArgs,
    values: BTreeMap<&'static str, String>,
    terminal: bool,
}

/// An event line: above the spinner on a terminal, a plain stderr line elsewhere.
fn emit_line(spinner: Option<&indicatif::ProgressBar>, global: &Global, text: &str) {
    match spinner {
        Some(s) => s.println(text),
        None => say(global, text),
    }
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
    // On a terminal, a spinner with the stack's status between the event lines; plain lines elsewhere.
    let spinner = (ctx.terminal && !ctx.global.quiet && !ctx.global.no_progress).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let result = loop {
        let waited = started.elapsed();
        let stack = match describe(&ctx.cfn, name).await {
            Ok(s) => s,
            // A blip (throttling, a dropped connection) while waiting is not the end of the deploy.
            Err(e)
                if waited < Duration::from_secs(3600)
                    && format!("{e:#}").contains("Throttling") =>
            {
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => break Err(e),
        };
        if let Some(since) = since {
            print_new_events(ctx, name, since, &mut seen, spinner.as_ref()).await;
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
            break Ok(stack);
        }
        if let (Some(sp), Some(st)) = (&spinner, status) {
            sp.set_message(format!("{name}: {} ({}s)", st.as_str(), waited.as_secs()));
        } else if since.is_none() && waited.as_secs().is_multiple_of(30) {
            say(
                ctx.global,
                &format!(
                    "waiting for {name}: {}",
                    status.map(|s| s.as_str()).unwrap_or("?")
                ),
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    result
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
    spinner: Option<&indicatif::ProgressBar>,
) {
    for e in events_since(&ctx.cfn, name, since).await {
        if !seen.insert(e.event_id().unwrap_or_default().to_owned()) {
            continue;
        }
        let time = e
            .timestamp()
            .map(|t| notes_handlers::domain::clock::iso_millis(t.to_millis().unwrap_or(0)))
            .unwrap_or_default();
        emit_line(
            spinner,
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
    token: Option<&str>,
) -> Vec<Failure> {
    events_since(cfn, name, since)
        .await
        .into_iter()
        // This run's events carry its request token (where the service sets one).
        .filter(|e| {
            token.is_none()
                || e.client_request_token().is_none()
                || e.client_request_token() == token
        })
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
    expected: &BTreeMap<String, String>,
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
    let deployed: BTreeMap<String, String> = stack
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    same_body && &deployed == expected
}

fn failed_report(name: &str, status: &str, reason: String, failure_status: &str) -> StackReport {
    StackReport {
        name: name.to_owned(),
        action: "failed",
        status: status.to_owned(),
        outputs: BTreeMap::new(),
        failures: vec![Failure {
            logical_id: name.to_owned(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            status: failure_status.to_owned(),
            reason,
        }],
        changes: Vec::new(),
    }
}

/// Removes what a change set that will not run leaves: the set, and a new stack's review shell.
async fn discard(ctx: &Ctx<'_>, name: &str, set_name: &str, created: bool) {
    let _ = ctx
        .cfn
        .delete_change_set()
        .stack_name(name)
        .change_set_name(set_name)
        .send()
        .await;
    if created {
        let _ = ctx.cfn.delete_stack().stack_name(name).send().await;
    }
}

async fn deploy_stack(ctx: &Ctx<'_>, short: &str) -> anyhow::Result<StackReport> {
    let name = stacks::stack_name(&ctx.global.stage, short);
    let path = ctx.args.templates.join(format!("{short}.yaml"));
    let body = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}; pass --templates DIR", path.display()))?;
    let declared = declared_parameters(&body)?;
    let expected = expected_parameters(&declared, &ctx.values);
    let params: Vec<Parameter> = declared
        .iter()
        .filter_map(|(k, _)| {
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
    let status_of = |s: &Option<aws_sdk_cloudformation::types::Stack>| {
        s.as_ref()
            .and_then(|s| s.stack_status().map(|s| s.as_str().to_owned()))
            .unwrap_or_default()
    };
    if action == NextAction::DeleteAndRecreate {
        let review =
            stack.as_ref().and_then(|s| s.stack_status()) == Some(&StackStatus::ReviewInProgress);
        if ctx.args.preview {
            let mut r = failed_report(
                &name,
                &status_of(&stack),
                format!("{name} would be deleted and created again (it holds no resources)"),
                "PREVIEW",
            );
            r.action = "preview";
            r.failures.clear();
            r.changes.push(Change {
                action: "Recreate".into(),
                logical_id: name.clone(),
                resource_type: "AWS::CloudFormation::Stack".into(),
                replacement: true,
            });
            return Ok(r);
        }
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
            return Ok(failed_report(&name, &status_of(&stack), why, "BLOCKED"));
        }
        other => anyhow::bail!("{name}: unexpected next action {other:?} after waiting"),
    };
    let created = change_type == ChangeSetType::Create;
    if !created
        && let Some(s) = &stack
        && deployed_matches(&ctx.cfn, &name, s, &body, &expected).await
    {
        return Ok(StackReport {
            name,
            action: "unchanged",
            status: status_of(&stack),
            outputs: outputs_of(s),
            failures: vec![],
            changes: vec![],
        });
    }
    let made = ctx
        .cfn
        .create_change_set()
        .stack_name(&name)
        .change_set_name(format!(
            "notesctl-{}",
            notes_handlers::domain::clock::now_millis()
        ))
        .change_set_type(change_type.clone())
        .template_body(&body)
        .set_parameters(Some(params.clone()))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .description(format!("notesctl deploy of {short}"))
        .send()
        .await;
    let made = match made {
        Ok(made) => made,
        Err(e) => {
            let reason = e
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{:#}", explain("creating a change set", &e)));
            return Ok(failed_report(
                &name,
                &status_of(&stack),
                dependency_hint(&reason),
                "CHANGE_SET_FAILED",
            ));
        }
    };
    // Every later call names the set by the ARN CloudFormation returned: a name is only unique per
    // stack, and a server that looks names up across stacks (moto) would otherwise act on another
    // deploy's set made in the same millisecond.
    let Some(set_name) = made.id().map(str::to_owned) else {
        anyhow::bail!("{name}: CloudFormation created a change set but returned no ARN for it");
    };
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
                discard(ctx, &name, &set_name, created).await;
                if is_no_changes(&reason) {
                    let s = describe(&ctx.cfn, &name).await?;
                    return Ok(StackReport {
                        name,
                        action: "unchanged",
                        status: status_of(&s),
                        outputs: s.as_ref().map(outputs_of).unwrap_or_default(),
                        failures: vec![],
                        changes: vec![],
                    });
                }
                return Ok(failed_report(
                    &name,
                    &status_of(&stack),
                    dependency_hint(&reason),
                    "CHANGE_SET_FAILED",
                ));
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(3));
    };
    let changes: Vec<Change> = set
        .changes()
        .iter()
        .filter_map(|c| c.resource_change())
        .map(|rc| Change {
            action: rc
                .action()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            logical_id: rc.logical_resource_id().unwrap_or_default().to_owned(),
            resource_type: rc.resource_type().unwrap_or_default().to_owned(),
            replacement: rc.replacement().is_some_and(|r| r.as_str() == "True"),
        })
        .collect();
    say(
        ctx.global,
        &format!(
            "{name}: {} change set",
            if created { "create" } else { "update" }
        ),
    );
    for c in &changes {
        say(
            ctx.global,
            &format!(
                "  {:<7} {:<36} {}{}",
                c.action,
                c.logical_id,
                c.resource_type,
                if c.replacement { "  (replacement)" } else { "" }
            ),
        );
    }
    if ctx.args.preview {
        discard(ctx, &name, &set_name, created).await;
        return Ok(StackReport {
            name,
            action: "preview",
            status: status_of(&stack),
            outputs: BTreeMap::new(),
            failures: vec![],
            changes,
        });
    }
    if let Err(e) = confirm(ctx, &format!("apply these changes to {name}")) {
        discard(ctx, &name, &set_name, created).await;
        return Err(e);
    }
    let token = format!(
        "notesctl-{}-{}",
        short,
        notes_handlers::domain::clock::now_millis()
    );
    let started = aws_sdk_cloudformation::primitives::DateTime::from(
        std::time::SystemTime::now() - Duration::from_secs(2),
    );
    if let Err(e) = ctx
        .cfn
        .execute_change_set()
        .stack_name(&name)
        .change_set_name(&set_name)
        .client_request_token(&token)
        .send()
        .await
    {
        // Refused outright (an unknown export, a missing capability): a failed deploy of this stack.
        let reason = e
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:#}", explain("executing the change set", &e)));
        let status = status_of(&describe(&ctx.cfn, &name).await?);
        return Ok(failed_report(
            &name,
            &status,
            dependency_hint(&reason),
            "EXECUTE_FAILED",
        ));
    }
    wait_for_execution(ctx, &name, &set_name).await;
    let done = settle(ctx, &name, Some(started)).await?;
    let status = done.as_ref().and_then(|s| s.stack_status()).cloned();
    let ok = matches!(
        status,
        Some(StackStatus::CreateComplete | StackStatus::UpdateComplete)
    );
    let status_text = status
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|| "DELETE_COMPLETE".into());
    if ok {
        let done = done.expect("a completed stack exists");
        return Ok(StackReport {
            name,
            action: if created { "created" } else { "updated" },
            status: status_text,
            outputs: outputs_of(&done),
            failures: vec![],
            changes,
        });
    }
    let mut failed = failures(&ctx.cfn, &name, started, Some(&token)).await;
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
    if let NextAction::Blocked(why) = next_action(&name, status.as_ref()) {
        failed.push(Failure {
            logical_id: name.clone(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            status: "NEXT_STEP".into(),
            reason: why,
        });
    }
    Ok(StackReport {
        name,
        action: "failed",
        status: status_text,
        outputs: BTreeMap::new(),
        failures: failed,
        changes,
    })
}

/// "No export named X" means a stack this one imports from is missing: say which to deploy.
fn dependency_hint(reason: &str) -> String {
    if reason.contains("No export named") {
        format!(
            "{reason} — a stack this one depends on is not deployed (deploy order: {}); deploy it first or drop --stack",
            stacks::STACKS.join(", ")
        )
    } else {
        reason.to_owned()
    }
}

/// Waits until CloudFormation has started (or finished) the change set, so the stack status read next
/// is this run's, not the previous one's.
async fn wait_for_execution(ctx: &Ctx<'_>, name: &str, set_name: &str) {
    use aws_sdk_cloudformation::types::ExecutionStatus;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match ctx
            .cfn
            .describe_change_set()
            .stack_name(name)
            .change_set_name(set_name)
            .send()
            .await
        {
            Ok(set)
                if matches!(
                    set.execution_status(),
                    Some(ExecutionStatus::Available) | Some(ExecutionStatus::Unavailable)
                ) => {}
            // Executing, executed, failed, obsolete, or gone (executed sets may be cleaned up): go on.
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn outputs_of(stack: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect()
}

/// Uploads the zip to the artifacts bucket under its sha256 (once); the bucket and key.
/// The artifacts bucket: `--artifacts-bucket`, or `notesctl-artifacts-{account}-{region}`.
pub async fn artifacts_bucket(
    config: &aws_config::SdkConfig,
    given: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(b) = given {
        return Ok(b.to_owned());
    }
    let who = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| explain("finding the AWS account", &e))?;
    let account = who.account().ok_or_else(|| {
        anyhow::anyhow!("STS did not say which account this is; pass --artifacts-bucket")
    })?;
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    Ok(format!("notesctl-artifacts-{account}-{region}"))
}

/// `{stage}/notes-lambda/{sha256}.zip`: content-addressed, and per stage so `destroy` removes only its own.
pub fn code_key(stage: &str, zip: &[u8]) -> String {
    format!("{stage}/notes-lambda/{}.zip", sha256_hex(zip))
}

/// Uploads the zip to the artifacts bucket under its sha256 (once); the bucket and key. With `upload`
/// false (a preview) it only works them out.
async fn upload_code(
    global: &Global,
    config: &aws_config::SdkConfig,
    args: &DeployArgs,
    upload: bool,
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
    let key = code_key(&global.stage, &zip);
    let bucket = artifacts_bucket(config, args.artifacts_bucket.as_deref()).await?;
    if !upload {
        return Ok((bucket, key));
    }
    let s3 = super::sync_frontend::s3_client(config, global.endpoint_url.is_some());
    match s3.head_bucket().bucket(&bucket).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error().is_some_and(|s| s.is_not_found())
                || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
        {
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
            match create.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
                Err(e) => return Err(explain(&format!("creating bucket {bucket}"), &e)),
            }
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
        Err(e) => {
            return Err(anyhow::anyhow!(
                "{:#}. The bucket {bucket} exists but is not usable here (another account's, or in another region): pass --artifacts-bucket with a bucket of yours in this region",
                explain(&format!("checking bucket {bucket}"), &e)
            ));
        }
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
    let terminal = std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    if !args.yes && !args.preview && !terminal {
        anyhow::bail!(
            "refusing to deploy without confirmation: pass --yes (no terminal to ask on), or --preview to only look"
        );
    }
    let needs_code = order
        .iter()
        .any(|s| matches!(*s, "auth" | "websocket" | "notes"));
    let mut values = BTreeMap::from([
        ("Stage", global.stage.clone()),
        ("Architecture", args.arch.as_str().to_owned()),
        ("AllowedOrigin", args.allowed_origin.clone()),
        ("SaveFunctionTimeout", args.save_timeout.to_string()),
    ]);
    if needs_code {
        let (bucket, key) = upload_code(global, &config, &args, !args.preview).await?;
        values.insert("CodeBucket", bucket);
        values.insert("CodeKey", key);
    }
    let ctx = Ctx {
        global,
        cfn: Client::new(&config),
        args: &args,
        values,
        terminal,
    };
    let mut report = DeployReport {
        stacks: Vec::new(),
        frontend: None,
        problem: None,
    };
    for short in order {
        let r = deploy_stack(&ctx, short).await?;
        let failed = r.action == "failed";
        let why = r
            .failures
            .iter()
            .find(|f| f.status == "BLOCKED" || f.status == "NEXT_STEP")
            .map(|f| f.reason.clone());
        report.stacks.push(r);
        if failed {
            let stopped = format!(
                "deploy stopped at {}: the stacks after it were not touched",
                stacks::stack_name(&global.stage, short)
            );
            report.problem = Some(match why {
                Some(w) => format!("{w}\n{stopped}"),
                None => stopped,
            });
            output::print(global.output, &report);
            return Ok(Exit::Problem);
        }
    }
    if let (Some(dir), false) = (&args.frontend, args.preview) {
        match ship_frontend(global, &config, dir).await {
            Ok((value, problem)) => {
                report.frontend = Some(value);
                report.problem = problem;
            }
            Err(e) => {
                report.problem = Some(format!(
                    "the stacks are deployed, but shipping the frontend failed: {e:#}. Run `notesctl sync-frontend {}` to retry",
                    dir.display()
                ))
            }
        }
        if report.problem.is_some() {
            output::print(global.output, &report);
            return Ok(Exit::Problem);
        }
    }
    output::print(global.output, &report);
    Ok(Exit::Ok)
}

/// `sync-frontend` then `invalidate --wait`, for `deploy --frontend`.
async fn ship_frontend(
    global: &Global,
    config: &aws_config::SdkConfig,
    dir: &std::path::Path,
) -> anyhow::Result<(serde_json::Value, Option<String>)> {
    let sync_args = super::sync_frontend::SyncArgs {
        dir: dir.to_path_buf(),
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
    let synced = super::sync_frontend::sync(global, config, &sync_args).await?;
    let inv_args = super::invalidate::InvalidateArgs {
        distribution_id: None,
        paths: vec!["/*".into()],
        wait: true,
        timeout: Duration::from_secs(900),
        bucket: Some(synced.bucket.clone()),
    };
    let invalidated =
        super::invalidate::invalidate(global, config, &inv_args, Some(synced.content_hash.clone()))
            .await?;
    let problem = invalidated.problem.clone();
    Ok((
        serde_json::json!({"sync": synced, "invalidation": invalidated}),
        problem,
    ))
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
        let t = "Parameters:\n  Stage:\n    Type: String\n  CodeKey:\n    Type: String\n  Memory:\n    Type: Number\n    Default: 256\nResources: {}\n";
        let declared = declared_parameters(t).unwrap();
        assert_eq!(
            declared,
            vec![
                ("Stage".into(), None),
                ("CodeKey".into(), None),
                ("Memory".into(), Some("256".into()))
            ]
        );
        let values = BTreeMap::from([("Stage", "p".to_owned()), ("Unused", "x".to_owned())]);
        let expected = expected_parameters(&declared, &values);
        assert_eq!(
            expected,
            BTreeMap::from([
                ("Stage".to_owned(), "p".to_owned()),
                ("Memory".to_owned(), "256".to_owned())
            ]),
            "defaults count; undeclared values do not"
        );
        assert_eq!(
            code_key("prod", b"zip"),
            format!("prod/notes-lambda/{}.zip", sha256_hex(b"zip"))
        );
        assert_eq!(
            selected(&["notes".into(), "event".into()]).unwrap(),
            vec!["event", "notes"]
        );
        assert_eq!(selected(&[]).unwrap().len(), 6);
        assert!(selected(&["nope".into()]).is_err());
    }

    mod recorded {
        //! The paths moto cannot act out, on recorded CloudFormation responses.
        use super::super::*;
        use aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput;
        use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
        use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
        use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
        use aws_sdk_cloudformation::operation::describe_stacks::{
            DescribeStacksError, DescribeStacksOutput,
        };
        use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
        use aws_sdk_cloudformation::operation::get_template::GetTemplateOutput;
        use aws_sdk_cloudformation::types::{
            ExecutionStatus, Output, ResourceStatus, Stack, StackEvent,
        };
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        use aws_smithy_types::error::ErrorMetadata;

        const TEMPLATE: &str = "Parameters:\n  Stage:\n    Type: String\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n";

        fn stack(status: StackStatus) -> Stack {
            Stack::builder()
                .stack_name("p-event-stack")
                .stack_status(status)
                .creation_time(aws_sdk_cloudformation::primitives::DateTime::from_secs(0))
                .outputs(
                    Output::builder()
                        .output_key("QueueUrl")
                        .output_value("https://sqs/q")
                        .build(),
                )
                .build()
        }

        fn setup(dir: &std::path::Path) -> (Global, DeployArgs) {
            use clap::Parser;
            std::fs::write(dir.join("event.yaml"), TEMPLATE).unwrap();
            let cli = crate::Cli::parse_from([
                "notesctl",
                "--quiet",
                "--stage",
                "p",
                "deploy",
                "--yes",
                "--stack",
                "event",
                "--templates",
                dir.to_str().unwrap(),
            ]);
            let crate::Command::Deploy(args) = cli.command else {
                unreachable!()
            };
            (cli.global, args)
        }

        fn ctx<'a>(global: &'a Global, args: &'a DeployArgs, cfn: Client) -> Ctx<'a> {
            Ctx {
                global,
                cfn,
                args,
                values: BTreeMap::from([("Stage", "p".to_owned())]),
                terminal: false,
            }
        }

        fn not_found() -> DescribeStacksError {
            DescribeStacksError::generic(
                ErrorMetadata::builder()
                    .code("ValidationError")
                    .message("Stack with id p-event-stack does not exist")
                    .build(),
            )
        }

        const SET_ARN: &str =
            "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/notesctl-1/0f1e2d3c";

        #[tokio::test]
        async fn rollback_complete_is_deleted_and_recreated() {
            let describe = mock!(Client::describe_stacks)
                .sequence()
                .output(|| {
                    DescribeStacksOutput::builder()
                        .stacks(stack(StackStatus::RollbackComplete))
                        .build()
                })
                .error(not_found)
                .output(|| {
                    DescribeStacksOutput::builder()
                        .stacks(stack(StackStatus::CreateComplete))
                        .build()
                })
                .repeatedly()
                .build();
            let delete =
                mock!(Client::delete_stack).then_output(|| DeleteStackOutput::builder().build());
            let create = mock!(Client::create_change_set)
                .match_requests(|r| r.change_set_type() == Some(&ChangeSetType::Create))
                .then_output(|| CreateChangeSetOutput::builder().id(SET_ARN).build());
            // Later calls name the set by its ARN, never by a name another stack may share.
            let describe_set = mock!(Client::describe_change_set)
                .match_requests(|r| r.change_set_name() == Some(SET_ARN))
                .sequence()
                .output(|| {
                    DescribeChangeSetOutput::builder()
                        .status(ChangeSetStatus::CreateComplete)
                        .build()
                })
                .output(|| {
                    DescribeChangeSetOutput::builder()
                        .status(ChangeSetStatus::CreateComplete)
                        .execution_status(ExecutionStatus::ExecuteComplete)
                        .build()
                })
                .repeatedly()
                .build();
            let execute = mock!(Client::execute_change_set)
                .match_requests(|r| r.change_set_name() == Some(SET_ARN))
                .then_output(|| ExecuteChangeSetOutput::builder().build());
            let events = mock!(Client::describe_stack_events)
                .then_output(|| DescribeStackEventsOutput::builder().build());
            let cfn = mock_client!(
                aws_sdk_cloudformation,
                RuleMode::MatchAny,
                [
                    &describe,
                    &delete,
                    &create,
                    &describe_set,
                    &execute,
                    &events
                ]
            );
            let dir = tempfile::tempdir().unwrap();
            let (global, args) = setup(dir.path());
            let report = deploy_stack(&ctx(&global, &args, cfn), "event")
                .await
                .unwrap();
            assert_eq!(
                (report.action, report.status.as_str()),
                ("created", "CREATE_COMPLETE")
            );
            assert_eq!(report.outputs["QueueUrl"], "https://sqs/q");
            assert_eq!(delete.num_calls(), 1, "the failed stack was deleted first");
        }

        /// The failed resource and its reason are reported even though the rollback already undid it.
        #[tokio::test]
        async fn a_failed_update_names_what_failed_after_the_rollback() {
            let describe = mock!(Client::describe_stacks)
                .sequence()
                .output(|| {
                    DescribeStacksOutput::builder()
                        .stacks(stack(StackStatus::UpdateComplete))
                        .build()
                })
                .output(|| {
                    DescribeStacksOutput::builder()
                        .stacks(stack(StackStatus::UpdateRollbackComplete))
                        .build()
                })
                .repeatedly()
                .build();
            let template = mock!(Client::get_template).then_output(|| {
                GetTemplateOutput::builder()
                    .template_body("Resources: {}")
                    .build()
            });
            let create = mock!(Client::create_change_set)
                .then_output(|| CreateChangeSetOutput::builder().id("cs").build());
            let describe_set = mock!(Client::describe_change_set).then_output(|| {
                DescribeChangeSetOutput::builder()
                    .status(ChangeSetStatus::CreateComplete)
                    .execution_status(ExecutionStatus::ExecuteFailed)
                    .build()
            });
            let execute = mock!(Client::execute_change_set)
                .then_output(|| ExecuteChangeSetOutput::builder().build());
            let events = mock!(Client::describe_stack_events).then_output(|| {
                let now = aws_sdk_cloudformation::primitives::DateTime::from(
                    std::time::SystemTime::now(),
                );
                let ev = |id: &str, logical: &str, status: ResourceStatus, reason: &str| {
                    StackEvent::builder()
                        .event_id(id)
                        .stack_id("s")
                        .stack_name("p-event-stack")
                        .logical_resource_id(logical)
                        .resource_type(if logical == "p-event-stack" {
                            "AWS::CloudFormation::Stack"
                        } else {
                            "AWS::SQS::Queue"
                        })
                        .resource_status(status)
                        .resource_status_reason(reason)
                        .timestamp(now)
                        .build()
                };
                // Newest first, as DescribeStackEvents returns them.
                DescribeStackEventsOutput::builder()
                    .stack_events(ev(
                        "4",
                        "p-event-stack",
                        ResourceStatus::UpdateRollbackComplete,
                        "",
                    ))
                    .stack_events(ev(
                        "3",
                        "Queue",
                        ResourceStatus::UpdateComplete,
                        "rolled back",
                    ))
                    .stack_events(ev(
                        "2",
                        "Queue",
                        ResourceStatus::UpdateFailed,
                        "Invalid value for the parameter VisibilityTimeout",
                    ))
                    .stack_events(ev(
                        "1",
                        "p-event-stack",
                        ResourceStatus::UpdateInProgress,
                        "User Initiated",
                    ))
                    .build()
            });
            let cfn = mock_client!(
                aws_sdk_cloudformation,
                RuleMode::MatchAny,
                [
                    &describe,
                    &template,
                    &create,
                    &describe_set,
                    &execute,
                    &events
                ]
            );
            let dir = tempfile::tempdir().unwrap();
            let (global, args) = setup(dir.path());
            let report = deploy_stack(&ctx(&global, &args, cfn), "event")
                .await
                .unwrap();
            assert_eq!(
                (report.action, report.status.as_str()),
                ("failed", "UPDATE_ROLLBACK_COMPLETE")
            );
            assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
            assert_eq!(report.failures[0].logical_id, "Queue");
            assert_eq!(
                report.failures[0].reason,
                "Invalid value for the parameter VisibilityTimeout"
            );
        }
    }
}
