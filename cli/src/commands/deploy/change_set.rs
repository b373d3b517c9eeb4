//! A stack's change set, from creation to execution: made from the template and parameters, read
//! until CloudFormation has worked out the changes, executed, or discarded with what it leaves.
//! Every call after the creation names the set by the ARN CloudFormation returned: a name is unique
//! only per stack, and a server that looks names up across stacks (moto) would otherwise act on
//! another deploy's set made in the same millisecond.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, ExecutionStatus, Parameter, Stack, TemplateStage,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::Value;

use super::plan::{NextAction, is_no_changes, next_action};
use super::{Change, ChangeAction};
use crate::aws::{Failure, classify, explain, stacks};
use crate::context::Deadline;

/// The template and the parameters a stack gets.
pub struct Template {
    pub body: String,
    /// Every declared parameter's value: ours, or the template's default.
    pub expected: BTreeMap<String, String>,
    /// What is passed: ours, for the parameters the template declares.
    pub parameters: Vec<Parameter>,
}

/// What CloudFormation made of a new change set.
pub enum Worked {
    Changes(Vec<Change>),
    NoChanges,
    Failed(String),
}

/// Whether the deployed template and parameters are already ours (so nothing would change). Decided
/// before any change set, so it holds against emulators that never report "no changes" too.
pub async fn deployed_matches(
    cfn: &Client,
    name: &str,
    stack: &Stack,
    template: &Template,
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
        .map(|b| b.trim() == template.body.trim())
        .unwrap_or(false);
    same_body && stacks::parameters_of(stack) == template.expected
}

/// The deployed template (as submitted) and parameters of `stack`, or an empty template and no
/// parameters when it holds nothing.
pub async fn deployed(
    cfn: &Client,
    name: &str,
    stack: &Option<Stack>,
) -> anyhow::Result<Option<(Value, BTreeMap<String, String>)>> {
    let Some(s) = stack else {
        return Ok(None);
    };
    if matches!(
        next_action(name, s.stack_status()),
        NextAction::Create | NextAction::DeleteAndRecreate
    ) {
        return Ok(None);
    }
    let got = cfn
        .get_template()
        .stack_name(name)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| explain(&format!("reading the deployed template of {name}"), &e))?;
    let body = got.template_body().unwrap_or("{}");
    let template = crate::template::parse(body)
        .map_err(|e| anyhow::anyhow!("the deployed template of {name} does not read: {e}"))?;
    Ok(Some((template, stacks::parameters_of(s))))
}

/// Creates the change set from the template at `template_url` (in the artifacts bucket: a body
/// would be refused past 51,200 bytes); its ARN, or CloudFormation's reason for refusing it.
pub async fn create(
    cfn: &Client,
    name: &str,
    short: &str,
    template: &Template,
    template_url: &str,
    change_type: ChangeSetType,
) -> anyhow::Result<Result<String, String>> {
    let set_name = format!("notesctl-{}", notes_handlers::domain::clock::now_millis());
    let made = cfn
        .create_change_set()
        .stack_name(name)
        .change_set_name(&set_name)
        // The SDK's retry of a request whose answer was lost is the same request, not a second set.
        .client_token(&set_name)
        .change_set_type(change_type)
        .template_url(template_url)
        .set_parameters(Some(template.parameters.clone()))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .description(format!("notesctl deploy of {short}"))
        .send()
        .await;
    match made {
        Ok(made) => match made.id() {
            Some(arn) => Ok(Ok(arn.to_owned())),
            None => anyhow::bail!(
                "{name}: CloudFormation created a change set but returned no ARN for it"
            ),
        },
        // A retry after an answer that got lost on the way: the set is there, under our name.
        Err(e) if e.code() == Some("AlreadyExistsException") => {
            let set = cfn
                .describe_change_set()
                .stack_name(name)
                .change_set_name(&set_name)
                .send()
                .await
                .map_err(|e| explain(&format!("reading the change set of {name}"), &e))?;
            match set.change_set_id() {
                Some(arn) => Ok(Ok(arn.to_owned())),
                None => anyhow::bail!("{name}: the change set {set_name} has no ARN"),
            }
        }
        Err(e) if classify(&e) == Failure::Refused => Ok(Err(e
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:#}", explain("creating a change set", &e))))),
        Err(e) => Err(explain(&format!("creating a change set for {name}"), &e)),
    }
}

/// Reads the change set until CloudFormation has worked out its changes (or refused), within the
/// deadline.
pub async fn worked_out(
    cfn: &Client,
    name: &str,
    arn: &str,
    deadline: &Deadline,
) -> anyhow::Result<Worked> {
    let mut delay = Duration::from_millis(300);
    loop {
        let set = match cfn
            .describe_change_set()
            .stack_name(name)
            .change_set_name(arn)
            .send()
            .await
        {
            Ok(set) => set,
            Err(e) if classify(&e).transient() && !deadline.expired() => {
                deadline.sleep(delay).await;
                continue;
            }
            Err(e) => return Err(explain(&format!("reading the change set of {name}"), &e)),
        };
        match set.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok(Worked::Changes(
                    set.changes()
                        .iter()
                        .filter_map(|c| c.resource_change())
                        .map(|rc| Change {
                            action: ChangeAction::from(
                                rc.action().map(|a| a.as_str()).unwrap_or_default(),
                            ),
                            logical_id: rc.logical_resource_id().unwrap_or_default().to_owned(),
                            resource_type: rc.resource_type().unwrap_or_default().to_owned(),
                            replacement: rc.replacement().is_some_and(|r| r.as_str() == "True"),
                        })
                        .collect(),
                ));
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = set.status_reason().unwrap_or_default().to_owned();
                return Ok(if is_no_changes(&reason) {
                    Worked::NoChanges
                } else {
                    Worked::Failed(reason)
                });
            }
            _ => {}
        }
        if !deadline.sleep(delay).await {
            anyhow::bail!(
                "CloudFormation did not work out the change set of {name} within --timeout {}: try again, or look at it in the console",
                deadline.shown()
            );
        }
        delay = (delay * 3 / 2).min(Duration::from_secs(3));
    }
}

/// Executes the change set under `token`; CloudFormation's reason if it refuses outright (an
/// unknown export, a missing capability). When the answer is lost or refused because the set is
/// already executing (a retry of a request that did arrive), the set's own state decides.
pub async fn execute(
    cfn: &Client,
    name: &str,
    arn: &str,
    token: &str,
) -> anyhow::Result<Result<(), String>> {
    let Err(e) = cfn
        .execute_change_set()
        .stack_name(name)
        .change_set_name(arn)
        .client_request_token(token)
        .send()
        .await
    else {
        return Ok(Ok(()));
    };
    let started = cfn
        .describe_change_set()
        .stack_name(name)
        .change_set_name(arn)
        .send()
        .await
        .is_ok_and(|set| {
            !matches!(
                set.execution_status(),
                Some(ExecutionStatus::Available) | Some(ExecutionStatus::Unavailable)
            )
        });
    if started {
        return Ok(Ok(()));
    }
    match classify(&e) {
        Failure::Refused => Ok(Err(e
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:#}", explain("executing the change set", &e))))),
        _ => Err(explain(&format!("executing the change set of {name}"), &e)),
    }
}

/// Waits until CloudFormation has started (or finished) the change set, so the stack status read next
/// is this run's, not the previous one's.
pub async fn wait_for_execution(cfn: &Client, name: &str, arn: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match cfn
            .describe_change_set()
            .stack_name(name)
            .change_set_name(arn)
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

/// Removes what a change set that will not run leaves: the set, and a new stack's review shell.
pub async fn discard(cfn: &Client, name: &str, arn: &str, new_stack: bool) {
    let _ = cfn
        .delete_change_set()
        .stack_name(name)
        .change_set_name(arn)
        .send()
        .await;
    if new_stack {
        let _ = cfn.delete_stack().stack_name(name).send().await;
    }
}

#[cfg(test)]
mod tests {
    //! What moto cannot show: CloudFormation's answer to a repeated CreateChangeSet.
    use super::*;
    use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn a_repeated_create_finds_the_set_the_lost_answer_made() {
        // The first request made the set; its answer was lost; the SDK's retry is told it exists.
        let create = mock!(Client::create_change_set)
            .match_requests(|r| {
                r.client_token() == r.change_set_name()
                    && r.template_url() == Some(URL)
                    && r.template_body().is_none()
            })
            .then_http_response(|| {
                aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>AlreadyExistsException</Code><Message>ChangeSet notesctl-1 already exists</Message></Error></ErrorResponse>",
                    ),
                )
            });
        let describe = mock!(Client::describe_change_set).then_output(|| {
            DescribeChangeSetOutput::builder()
                .change_set_id("arn:aws:cloudformation:eu-west-2:1:changeSet/notesctl-1/abc")
                .build()
        });
        let cfn = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            [&create, &describe]
        );
        let template = Template {
            body: "{}".into(),
            expected: BTreeMap::new(),
            parameters: vec![],
        };
        let arn = create_set(&cfn, &template).await;
        assert_eq!(
            arn,
            "arn:aws:cloudformation:eu-west-2:1:changeSet/notesctl-1/abc"
        );
        assert_eq!((create.num_calls(), describe.num_calls()), (1, 1));
    }

    const URL: &str = "https://b.s3.eu-west-2.amazonaws.com/p/templates/0.yaml";

    async fn create_set(cfn: &Client, template: &Template) -> String {
        create(
            cfn,
            "p-event-stack",
            "event",
            template,
            URL,
            ChangeSetType::Create,
        )
        .await
        .expect("no error")
        .expect("not refused")
    }
}
