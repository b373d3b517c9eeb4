//! `deploy --hotswap`: when the only difference from the deployed stacks is the code zip (templates
//! and every other parameter equal), skip CloudFormation — upload the zip, point every function that
//! does not run it yet at it (`UpdateFunctionCode`, in parallel), and wait until each reports
//! `LastUpdateStatus: Successful`. Seconds instead of minutes. CloudFormation's `CodeKey` stays
//! behind the running code until the next full deploy, which brings it level and says so
//! ([`behind`]).

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::Stack;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::compare::StackDiff;
use super::{
    Code, DeployArgs, DeployReport, Inputs, StackAction, StackReport, artifacts, functions_in,
};
use crate::aws::artifacts::Artifacts;
use crate::aws::stacks;
use crate::context::{Context, Deadline};

/// What the hotswap did to one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionUpdate {
    pub function: String,
    /// `updated` (its LastUpdateStatus reached Successful), `unchanged` (it already ran the zip), or
    /// `failed`.
    pub outcome: Outcome,
    /// Why it failed: Lambda's LastUpdateStatusReason, or the call that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Updated,
    Unchanged,
    Failed,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged (already ran this zip)",
            Outcome::Failed => "FAILED",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HotswapReport {
    /// The code key the functions now run (`{stage}/notes-lambda/{sha256}.zip`).
    pub code_key: String,
    pub functions: Vec<FunctionUpdate>,
    pub seconds: f64,
}

/// Why a hotswap cannot do this deploy, as one sentence naming the stack and what differs; `None`
/// when every difference is the `CodeKey` parameter.
pub fn why_not<'a>(diffs: impl IntoIterator<Item = &'a StackDiff>) -> Option<String> {
    for d in diffs {
        if !d.deployed {
            return Some(format!("{} is not deployed yet", d.name));
        }
        let mut what = Vec::new();
        if !d.resources.is_empty() {
            let ids: Vec<&str> = d.resources.iter().map(|r| r.logical_id.as_str()).collect();
            what.push(format!("resources {}", ids.join(", ")));
        }
        let other: Vec<&str> = d
            .parameters
            .iter()
            .filter(|p| p.name != "CodeKey")
            .map(|p| p.name.as_str())
            .collect();
        if !other.is_empty() {
            what.push(format!("parameters {}", other.join(", ")));
        }
        if !d.outputs.is_empty() {
            what.push("outputs".to_owned());
        }
        if !d.iam.is_empty() {
            what.push("IAM".to_owned());
        }
        if !what.is_empty() {
            return Some(format!(
                "{} differs in more than code: {}",
                d.name,
                what.join("; ")
            ));
        }
    }
    None
}

/// The deployed stacks of `order` against the templates, as `diff` sees them, with each stack.
pub async fn diffs(
    ctx: &Context,
    cfn: &Client,
    inputs: &Inputs,
    values: &BTreeMap<&'static str, String>,
    order: &[&str],
) -> anyhow::Result<Vec<(StackDiff, Option<Stack>)>> {
    let mut out = Vec::new();
    for short in order {
        let (diff, _, stack) = super::stack_diff(ctx, cfn, inputs, values, short).await?;
        out.push((diff, stack));
    }
    Ok(out)
}

/// Points each of `functions` at `bucket`/`key` unless it already runs `sha256` (base64), at most
/// six at a time, and waits for each to finish updating.
pub async fn update_functions(
    ctx: &Context,
    lambda: &aws_sdk_lambda::Client,
    functions: &[String],
    (bucket, key, sha256): (&str, &str, &str),
    deadline: &Deadline,
) -> Vec<FunctionUpdate> {
    let mut done: Vec<FunctionUpdate> = futures::stream::iter(functions)
        .map(|f| async move {
            let (outcome, reason) =
                match super::artifacts::update_code(lambda, f, bucket, key, sha256, deadline).await
                {
                    Ok(true) => (Outcome::Updated, None),
                    Ok(false) => (Outcome::Unchanged, None),
                    Err(e) => (Outcome::Failed, Some(format!("{e:#}"))),
                };
            ctx.say(format!(
                "{f}: {}",
                match outcome {
                    Outcome::Updated => "updated",
                    Outcome::Unchanged => "already runs this zip",
                    Outcome::Failed => "FAILED",
                }
            ));
            FunctionUpdate {
                function: f.clone(),
                outcome,
                reason,
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    done.sort_by(|a, b| a.function.cmp(&b.function));
    done
}

/// The functions of a deployed code stack that run other code than its `CodeKey` says: what a
/// hotswap left behind (or an update outside notesctl). The key names the zip's SHA-256, so no
/// download is needed to tell.
pub async fn behind(
    lambda: &aws_sdk_lambda::Client,
    functions: &[String],
    deployed_code_key: &str,
) -> anyhow::Result<Vec<String>> {
    let Some(sha256) = crate::aws::artifacts::sha256_of_key(deployed_code_key) else {
        return Ok(Vec::new());
    };
    Ok(super::artifacts::mismatches(lambda, functions, &sha256)
        .await?
        .into_iter()
        .filter(|m| m.code_sha256.is_some())
        .map(|m| m.function)
        .collect())
}

/// `--hotswap`: when the stacks differ from the templates in their `CodeKey` alone, upload the zip
/// and update the functions directly — the report; `None` (after saying why) when a full deploy is
/// needed.
pub async fn run(
    ctx: &Context,
    cfn: &Client,
    config: &aws_config::SdkConfig,
    args: &DeployArgs,
    values: &BTreeMap<&'static str, String>,
    order: &[&str],
    code: &Option<(Code, Artifacts)>,
) -> anyhow::Result<Option<DeployReport>> {
    let diffs = diffs(ctx, cfn, &args.inputs, values, order).await?;
    if let Some(why) = why_not(diffs.iter().map(|(d, _)| d)) {
        ctx.say(format!(
            "hotswap: not possible, {why}; deploying through CloudFormation"
        ));
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let mut report = DeployReport::default();
    for (d, stack) in &diffs {
        let action = if d.differs {
            StackAction::Hotswapped
        } else {
            StackAction::Unchanged
        };
        report.stacks.push(StackReport::new(&d.name, action, stack));
    }
    let Some((code, store)) = code else {
        return Ok(Some(report));
    };
    let functions = functions_in(&args.inputs.templates, order, ctx.stage())?;
    if !args.yes {
        crate::context::confirm(
            &format!(
                "point {} functions at {} without CloudFormation",
                functions.len(),
                code.key
            ),
            "nothing changed",
        )
        .await?;
    }
    let region = config.region().map(|r| r.to_string());
    artifacts::upload(ctx, store, code, region.as_deref()).await?;
    let lambda = aws_sdk_lambda::Client::new(config);
    let updates = update_functions(
        ctx,
        &lambda,
        &functions,
        (&store.bucket, &code.key, &code.sha256),
        &Deadline::after(args.timeout),
    )
    .await;
    let failed: Vec<&str> = updates
        .iter()
        .filter(|u| u.outcome == Outcome::Failed)
        .map(|u| u.function.as_str())
        .collect();
    if !failed.is_empty() {
        report.problem = Some(format!(
            "the hotswap failed for {} (each reason above): those functions may still run the old code. Hotswap again, or deploy without --hotswap",
            failed.join(", ")
        ));
    }
    report.hotswap = Some(HotswapReport {
        code_key: code.key.clone(),
        functions: updates,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(Some(report))
}

/// Before a full deploy of code stacks: the functions that run other code than their stack's
/// `CodeKey` names — what a hotswap left — which this deploy brings level (and says so).
pub async fn left_behind(
    ctx: &Context,
    cfn: &Client,
    lambda: &aws_sdk_lambda::Client,
    args: &DeployArgs,
    order: &[&str],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for short in order {
        let Some(stack) = stacks::describe(cfn, &stacks::stack_name(ctx.stage(), short)).await?
        else {
            continue;
        };
        let Some(key) = stacks::parameters_of(&stack).remove("CodeKey") else {
            continue;
        };
        let functions = functions_in(&args.inputs.templates, &[short], ctx.stage())?;
        out.extend(behind(lambda, &functions, &key).await?);
    }
    if !out.is_empty() {
        ctx.say(format!(
            "{} run code their stack's CodeKey does not name (left by a hotswap): this deploy brings CloudFormation level with them",
            out.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::deploy::compare::{IamDiff, ValueChange};

    fn stack(name: &str, parameters: &[&str]) -> StackDiff {
        StackDiff {
            name: name.into(),
            differs: !parameters.is_empty(),
            deployed: true,
            parameters: parameters
                .iter()
                .map(|p| ValueChange {
                    name: (*p).into(),
                    old: Some("a".into()),
                    new: Some("b".into()),
                    used_by: vec![],
                })
                .collect(),
            resources: vec![],
            outputs: vec![],
            iam: IamDiff::default(),
            replaced: vec![],
            replacement_unknown: vec![],
            change_set: None,
        }
    }

    #[test]
    fn only_a_new_code_key_can_be_hotswapped() {
        assert_eq!(
            why_not(&[
                stack("p-event-stack", &[]),
                stack("p-auth-stack", &["CodeKey"])
            ]),
            None
        );
        assert_eq!(
            why_not(&[stack("p-auth-stack", &["CodeKey", "SaveFunctionTimeout"])]).as_deref(),
            Some("p-auth-stack differs in more than code: parameters SaveFunctionTimeout")
        );
        let mut new = stack("p-notes-stack", &[]);
        new.deployed = false;
        assert_eq!(
            why_not(&[new]).as_deref(),
            Some("p-notes-stack is not deployed yet")
        );
    }
}
