//! The app's CloudFormation stacks by name, whether they exist, and their outputs.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::Stack;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::explain;

/// The stacks, in dependency order.
pub const STACKS: [&str; 6] = ["event", "data", "auth", "websocket", "notes", "frontend"];

/// The parameters `deploy` passes, to each stack that declares them.
pub const DEPLOY_PARAMETERS: [&str; 7] = [
    "Stage",
    "Architecture",
    "AllowedOrigin",
    "SaveFunctionTimeout",
    "PublicFeedShards",
    "CodeBucket",
    "CodeKey",
];

pub fn stack_name(stage: &str, short: &str) -> String {
    format!("{stage}-{short}-stack")
}

/// The stacks a `--stack` list names, in dependency order; all of them for an empty list.
pub fn selected(requested: &[String]) -> anyhow::Result<Vec<&'static str>> {
    for r in requested {
        if !STACKS.contains(&r.as_str()) {
            anyhow::bail!(
                "--stack {r}: no such stack; use one of {}",
                STACKS.join(", ")
            );
        }
    }
    Ok(STACKS
        .iter()
        .copied()
        .filter(|s| requested.is_empty() || requested.iter().any(|r| r == s))
        .collect())
}

/// CloudFormation's answer for a stack that does not exist: a `ValidationError` saying so. The one
/// place that reads it.
pub fn is_missing<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ValidationError")
        && err.message().is_some_and(|m| m.contains("does not exist"))
}

/// The stack, or `None` if it does not exist. Any other error (credentials, throttling, the wrong
/// endpoint) is an error, never "not deployed".
pub async fn describe(cfn: &Client, name: &str) -> anyhow::Result<Option<Stack>> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.and_then(|s| s.into_iter().next())),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(explain(&format!("describing stack {name}"), &e)),
    }
}

/// A stack's outputs, `OutputKey` → `OutputValue`.
pub fn outputs_of(stack: &Stack) -> BTreeMap<String, String> {
    stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect()
}

/// A stack's parameters, `ParameterKey` → `ParameterValue`.
pub fn parameters_of(stack: &Stack) -> BTreeMap<String, String> {
    stack
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_owned(),
                p.parameter_value().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// A stack's outputs, or `None` if the stack does not exist.
pub async fn outputs(
    cfn: &Client,
    stack: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    Ok(describe(cfn, stack).await?.as_ref().map(outputs_of))
}

/// One output of one stack, or an error that says which stack to deploy or which flag to pass.
pub async fn output(
    cfn: &Client,
    stage: &str,
    short: &str,
    key: &str,
    flag: &str,
) -> anyhow::Result<String> {
    let stack = stack_name(stage, short);
    match outputs(cfn, &stack).await? {
        Some(o) => o.get(key).cloned().ok_or_else(|| {
            anyhow::anyhow!("stack {stack} has no output {key}: deploy it with the current templates, or pass {flag}")
        }),
        None => anyhow::bail!("stack {stack} does not exist (check --stage and --region): deploy it first, or pass {flag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_come_in_dependency_order() {
        assert_eq!(
            selected(&["notes".into(), "event".into()]).unwrap(),
            vec!["event", "notes"]
        );
        assert_eq!(selected(&[]).unwrap().len(), 6);
        assert!(selected(&["nope".into()]).is_err());
        assert_eq!(stack_name("p", "data"), "p-data-stack");
    }
}
