//! What `deploy` reports: per stack, what it did, its status and outputs, the changes, and what
//! failed; then the frontend, and the problem that stopped the run.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::super::invalidate::InvalidateReport;
use super::super::sync_frontend::SyncReport;
use super::super::validate::Finding;
use super::artifacts::CodeMismatch;
use super::hotswap::HotswapReport;
use crate::output::{Exit, Report};

/// What a deploy did with a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StackAction {
    Created,
    Updated,
    Unchanged,
    Preview,
    Failed,
    /// CloudFormation was still working on it at `--timeout`.
    #[serde(rename = "still-running")]
    StillRunning,
    /// Only its code differed, and `--hotswap` updated the functions without CloudFormation.
    Hotswapped,
}

impl fmt::Display for StackAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StackAction::Created => "created",
            StackAction::Updated => "updated",
            StackAction::Unchanged => "unchanged",
            StackAction::Preview => "preview",
            StackAction::Failed => "failed",
            StackAction::StillRunning => "still-running",
            StackAction::Hotswapped => "hotswapped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StackReport {
    pub name: String,
    pub action: StackAction,
    pub status: String,
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// The change set's resource changes (what `--preview` shows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// A resource change as CloudFormation names it (`Add`, `Modify`, `Remove`, …), or the whole stack
/// deleted and created again (`Recreate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ChangeAction {
    Add,
    Modify,
    Remove,
    Import,
    Dynamic,
    Recreate,
    #[serde(untagged)]
    Other(String),
}

impl From<&str> for ChangeAction {
    fn from(s: &str) -> ChangeAction {
        match s {
            "Add" => ChangeAction::Add,
            "Modify" => ChangeAction::Modify,
            "Remove" => ChangeAction::Remove,
            "Import" => ChangeAction::Import,
            "Dynamic" => ChangeAction::Dynamic,
            "Recreate" => ChangeAction::Recreate,
            other => ChangeAction::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeAction::Other(s) => f.write_str(s),
            known => write!(f, "{known:?}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub action: ChangeAction,
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub replacement: bool,
}

/// Why a stack's deploy failed: a resource's own status (`CREATE_FAILED`, …), or a stage of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FailureStatus {
    /// The stack is in a state only a person can get it out of; the reason says how.
    #[serde(rename = "BLOCKED")]
    Blocked,
    /// After a failure: what to do next.
    #[serde(rename = "NEXT_STEP")]
    NextStep,
    #[serde(rename = "CHANGE_SET_FAILED")]
    ChangeSetFailed,
    #[serde(rename = "EXECUTE_FAILED")]
    ExecuteFailed,
    #[serde(untagged)]
    Resource(String),
}

impl FailureStatus {
    /// A step for the person, rather than a resource that failed.
    pub fn is_advice(&self) -> bool {
        matches!(self, FailureStatus::Blocked | FailureStatus::NextStep)
    }
}

impl fmt::Display for FailureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureStatus::Blocked => "BLOCKED",
            FailureStatus::NextStep => "NEXT_STEP",
            FailureStatus::ChangeSetFailed => "CHANGE_SET_FAILED",
            FailureStatus::ExecuteFailed => "EXECUTE_FAILED",
            FailureStatus::Resource(s) => s,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub logical_id: String,
    pub resource_type: String,
    pub status: FailureStatus,
    pub reason: String,
}

/// `deploy --frontend`: the sync and the invalidation that followed the stacks.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FrontendReport {
    pub sync: SyncReport,
    pub invalidation: InvalidateReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeployReport {
    pub stacks: Vec<StackReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What `validate` found, when it stopped the deploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// Functions that do not run the uploaded zip after the deploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_mismatches: Vec<CodeMismatch>,
    /// `--hotswap`: the functions it updated without CloudFormation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotswap: Option<HotswapReport>,
    /// Functions that ran code their stack's `CodeKey` did not name (a hotswap's) before this full
    /// deploy brought CloudFormation level with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reconciled: Vec<String>,
    /// The release this deploy recorded (`notesctl history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<super::releases::Release>,
    /// Why the deploy, though done, could not be recorded as a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_problem: Option<String>,
}

impl Report for DeployReport {
    fn exit(&self) -> Exit {
        Exit::problem_if(self.problem.is_some())
    }
}

impl fmt::Display for DeployReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.stacks {
            writeln!(
                f,
                "{:<32} {:<10} {}",
                s.name,
                s.action.to_string(),
                s.status
            )?;
            for fail in &s.failures {
                writeln!(
                    f,
                    "  ✗ {} ({}) {}: {}",
                    fail.logical_id, fail.resource_type, fail.status, fail.reason
                )?;
            }
        }
        if let Some(h) = &self.hotswap {
            writeln!(f, "hotswap of {} in {:.1} s:", h.code_key, h.seconds)?;
            for u in &h.functions {
                write!(f, "  {:<34} {}", u.function, u.outcome)?;
                if let Some(r) = &u.reason {
                    write!(f, ": {r}")?;
                }
                writeln!(f)?;
            }
        }
        if !self.reconciled.is_empty() {
            writeln!(
                f,
                "reconciled: CloudFormation now names the code {} run (a hotswap had left it behind)",
                self.reconciled.join(", ")
            )?;
        }
        for m in &self.code_mismatches {
            writeln!(
                f,
                "  ✗ {} runs code {}, not this deploy's zip",
                m.function,
                m.code_sha256
                    .as_deref()
                    .unwrap_or("(unknown: no such function)")
            )?;
        }
        for x in &self.findings {
            let mark = if x.severity.is_error() { '✗' } else { '!' };
            writeln!(f, "{mark} {} {}: {}", x.file, x.resource, x.problem)?;
            writeln!(f, "    fix: {}", x.fix)?;
        }
        if let Some(r) = &self.release {
            writeln!(f, "release {} recorded", r.id)?;
        }
        if let Some(p) = &self.release_problem {
            writeln!(f, "warning: {p}")?;
        }
        if let Some(fe) = &self.frontend {
            writeln!(f, "frontend: {}", fe.sync)?;
            writeln!(f, "frontend: {}", fe.invalidation)?;
        }
        if let Some(p) = &self.problem {
            write!(f, "{p}")?;
        }
        Ok(())
    }
}
