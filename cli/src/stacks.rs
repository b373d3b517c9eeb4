//! The app's CloudFormation stacks by name, and their outputs.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::explain;

/// The stacks, in dependency order.
pub const STACKS: [&str; 6] = ["event", "data", "auth", "websocket", "notes", "frontend"];

pub fn stack_name(stage: &str, short: &str) -> String {
    format!("{stage}-{short}-stack")
}

/// A stack's outputs (`OutputKey` → `OutputValue`), or `None` if the stack does not exist.
pub async fn outputs(
    cfn: &Client,
    stack: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().map(|s| {
            s.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect()
        })),
        Err(e)
            if e.code() == Some("ValidationError")
                && e.message().is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(e) => Err(explain(&format!("describing stack {stack}"), &e)),
    }
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
