//! The pure part of a deploy: what to do with a stack in a given state, whether CloudFormation's
//! answer means "no changes", and which parameters a template will get. No I/O here.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::StackStatus;

use crate::aws::stacks;

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

/// Parameters a template declares, from its `Parameters` section, with their defaults.
pub fn declared_parameters(template: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    Ok(crate::template::declared_parameters(
        &crate::template::parse(template)?,
    ))
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

/// "No export named X" means a stack this one imports from is missing: say which to deploy.
pub fn dependency_hint(reason: &str) -> String {
    if reason.contains("No export named") {
        format!(
            "{reason} — a stack this one depends on is not deployed (deploy order: {}); deploy it first or drop --stack",
            stacks::STACKS.join(", ")
        )
    } else {
        reason.to_owned()
    }
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
    fn templates_declare_what_they_take() {
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
    }
}
