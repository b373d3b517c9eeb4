//! What differs between a deployed stack and ours, as data: resources added, removed and modified —
//! each changed property's path, old and new value, and whether CloudFormation replaces the resource
//! for it — parameters, outputs, and the IAM grants added or taken away. What `diff` shows and what
//! decides whether `deploy --hotswap` may skip CloudFormation. Pure; both templates are read into the
//! long form first (`crate::template`), so `!Ref X` and `{Ref: X}` are the same.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Change;
use crate::template::one_or_many;

/// Whether changing a property makes CloudFormation create a new resource and delete the old one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Replacement {
    /// Updated in place.
    No,
    /// notesctl does not know this property's update behaviour: `diff --change-set` asks CloudFormation.
    Unknown,
    /// The resource is created anew (a new physical id: a new table, queue, function…).
    Yes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Added,
    Removed,
    Modified,
}

/// One changed value inside a resource: `Properties.MemorySize`, `Properties.Tags[1].Value`, `DependsOn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PropertyChange {
    pub path: String,
    /// Absent when the property is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// Absent when the property is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    pub replacement: Replacement,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceDiff {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub action: Action,
    /// For a modified resource, what changed in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PropertyChange>,
    /// The strongest replacement among its changes (`no` for added and removed resources).
    pub replacement: Replacement,
}

/// A parameter or an output whose value differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValueChange {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// For a parameter: the resources that use it (and so change with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

/// One permission a template grants: an IAM policy statement (of a role or policy), or a resource
/// policy (a Lambda permission, a queue or bucket policy), one action each.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Grant {
    /// The logical id of the role, policy or permission that grants it.
    pub by: String,
    pub effect: String,
    pub action: String,
    /// The resources (as the template writes them, intrinsic functions included).
    pub on: String,
    /// Who, for a resource policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The statement's condition, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IamDiff {
    pub granted: Vec<Grant>,
    pub revoked: Vec<Grant>,
}

impl IamDiff {
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.revoked.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StackDiff {
    pub name: String,
    /// Whether a deploy would change anything in this stack.
    pub differs: bool,
    /// False when the stack does not exist (or holds nothing after a failed first create): a deploy
    /// creates every resource.
    pub deployed: bool,
    pub parameters: Vec<ValueChange>,
    pub resources: Vec<ResourceDiff>,
    pub outputs: Vec<ValueChange>,
    pub iam: IamDiff,
    /// The resources CloudFormation will create anew (a new table, queue, function…), by logical id.
    pub replaced: Vec<String>,
    /// Modified resources whose replacement notesctl cannot tell (run with `--change-set`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replacement_unknown: Vec<String>,
    /// With `--change-set`: CloudFormation's own list of changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_set: Option<Vec<Change>>,
}

impl StackDiff {
    fn any_difference(&self) -> bool {
        !self.deployed
            || !self.parameters.is_empty()
            || !self.resources.is_empty()
            || !self.outputs.is_empty()
            || !self.iam.is_empty()
    }

    /// CloudFormation's change set decides which resources are replaced, both ways: it knows the
    /// properties notesctl's table does not, and values only known at deploy time.
    pub fn take_change_set(&mut self, changes: Vec<Change>) {
        self.replaced = changes
            .iter()
            .filter(|c| c.replacement)
            .map(|c| c.logical_id.clone())
            .collect();
        self.replacement_unknown.clear();
        self.change_set = Some(changes);
    }
}

/// The difference between a stack as deployed (its template and parameters; `None` when it holds
/// nothing) and `ours` with the parameters a deploy would pass.
pub fn stack(
    name: &str,
    deployed: Option<(Value, BTreeMap<String, String>)>,
    ours: &Value,
    expected: &BTreeMap<String, String>,
) -> StackDiff {
    let is_deployed = deployed.is_some();
    let (old, old_parameters) =
        deployed.unwrap_or_else(|| (serde_json::json!({}), BTreeMap::new()));
    let resources = resources(&old, ours);
    let mut diff = StackDiff {
        name: name.to_owned(),
        differs: false,
        deployed: is_deployed,
        parameters: parameters(&old_parameters, expected, ours),
        replaced: resources
            .iter()
            .filter(|r| r.replacement == Replacement::Yes)
            .map(|r| r.logical_id.clone())
            .collect(),
        replacement_unknown: resources
            .iter()
            .filter(|r| r.replacement == Replacement::Unknown)
            .map(|r| r.logical_id.clone())
            .collect(),
        resources,
        outputs: outputs(&old, ours),
        iam: iam(&old, ours),
        change_set: None,
    };
    diff.differs = diff.any_difference();
    diff
}

/// Properties whose change replaces the resource, for the resource types these templates use,
/// transcribed from each type's "Update requires: Replacement" in the CloudFormation User Guide.
/// A type listed here updates every other property in place; a type not listed is `Unknown`.
const REPLACED_BY: &[(&str, &[&str])] = &[
    ("AWS::ApiGatewayV2::Api", &["ProtocolType"]),
    ("AWS::ApiGatewayV2::Integration", &["ApiId"]),
    ("AWS::ApiGatewayV2::Route", &["ApiId"]),
    ("AWS::ApiGatewayV2::Stage", &["ApiId", "StageName"]),
    ("AWS::CloudFront::Distribution", &[]),
    ("AWS::CloudFront::OriginAccessControl", &[]),
    ("AWS::CloudWatch::Dashboard", &["DashboardName"]),
    (
        "AWS::DynamoDB::Table",
        &[
            "TableName",
            "KeySchema",
            "LocalSecondaryIndexes",
            "ImportSourceSpecification",
        ],
    ),
    ("AWS::Events::Archive", &["ArchiveName", "SourceArn"]),
    ("AWS::Events::EventBus", &["Name", "EventSourceName"]),
    ("AWS::Events::Rule", &["Name", "EventBusName"]),
    ("AWS::IAM::Role", &["RoleName", "Path"]),
    ("AWS::IAM::Policy", &[]),
    ("AWS::IAM::ManagedPolicy", &["ManagedPolicyName", "Path"]),
    (
        "AWS::Lambda::EventSourceMapping",
        &[
            "EventSourceArn",
            "StartingPosition",
            "StartingPositionTimestamp",
            "SelfManagedEventSource",
            "Queues",
            "Topics",
        ],
    ),
    ("AWS::Lambda::Function", &["FunctionName", "PackageType"]),
    (
        "AWS::Lambda::EventInvokeConfig",
        &["FunctionName", "Qualifier"],
    ),
    (
        "AWS::Lambda::Permission",
        &[
            "Action",
            "EventSourceToken",
            "FunctionName",
            "FunctionUrlAuthType",
            "Principal",
            "PrincipalOrgID",
            "SourceAccount",
            "SourceArn",
        ],
    ),
    ("AWS::Logs::LogGroup", &["LogGroupName", "LogGroupClass"]),
    ("AWS::S3::Bucket", &["BucketName"]),
    ("AWS::S3::BucketPolicy", &["Bucket"]),
    ("AWS::SQS::Queue", &["QueueName", "FifoQueue"]),
    ("AWS::SQS::QueuePolicy", &[]),
    ("AWS::SecretsManager::Secret", &["Name"]),
];

/// What a change at `path` (below the resource) does to a resource of `resource_type`.
pub fn replacement(resource_type: &str, path: &str) -> Replacement {
    let Some(property) = path.strip_prefix("Properties.") else {
        // DependsOn, Metadata, DeletionPolicy, …: attributes of the template, not of the resource.
        return if path == "Type" {
            Replacement::Yes
        } else {
            Replacement::No
        };
    };
    let top = property.split(['.', '[']).next().unwrap_or(property);
    match REPLACED_BY.iter().find(|(t, _)| *t == resource_type) {
        Some((_, replaced)) if replaced.contains(&top) => Replacement::Yes,
        Some(_) => Replacement::No,
        None => Replacement::Unknown,
    }
}

fn section<'a>(template: &'a Value, name: &str) -> BTreeMap<&'a str, &'a Value> {
    template[name]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

/// A changed value: its path, the old value and the new (absent when there is none).
type Changed = (String, Option<Value>, Option<Value>);

/// The values that differ between `old` and `new`, by path (`a.b[2].c`); arrays of different
/// lengths, and intrinsic functions, are one change each.
pub fn changed_values(old: &Value, new: &Value, path: &str, out: &mut Vec<Changed>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    // An intrinsic function (`{"Fn::Sub": …}`) is one value: its insides are not properties.
    let intrinsic = |v: &Value| crate::template::intrinsic(v).is_some();
    match (old, new) {
        (Value::Object(a), Value::Object(b)) if !intrinsic(old) && !intrinsic(new) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => changed_values(x, y, &join(k), out),
                    (x, y) => out.push((join(k), x.cloned(), y.cloned())),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                changed_values(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push((path.to_owned(), Some(a.clone()), Some(b.clone()))),
        _ => {}
    }
}

/// Resources added, removed and modified from `old` to `new`, in logical-id order.
pub fn resources(old: &Value, new: &Value) -> Vec<ResourceDiff> {
    let (a, b) = (section(old, "Resources"), section(new, "Resources"));
    let ids: BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    let type_of = |r: &Value| r["Type"].as_str().unwrap_or("?").to_owned();
    ids.into_iter()
        .filter_map(|id| match (a.get(id), b.get(id)) {
            (None, Some(r)) => Some(ResourceDiff {
                logical_id: id.to_owned(),
                resource_type: type_of(r),
                action: Action::Added,
                changes: Vec::new(),
                replacement: Replacement::No,
            }),
            (Some(r), None) => Some(ResourceDiff {
                logical_id: id.to_owned(),
                resource_type: type_of(r),
                action: Action::Removed,
                changes: Vec::new(),
                replacement: Replacement::No,
            }),
            (Some(x), Some(y)) => {
                let mut found = Vec::new();
                changed_values(x, y, "", &mut found);
                if found.is_empty() {
                    return None;
                }
                let resource_type = type_of(y);
                let changes: Vec<PropertyChange> = found
                    .into_iter()
                    .map(|(path, old, new)| PropertyChange {
                        replacement: replacement(&type_of(x), &path),
                        path,
                        old,
                        new,
                    })
                    .collect();
                Some(ResourceDiff {
                    logical_id: id.to_owned(),
                    resource_type,
                    action: Action::Modified,
                    replacement: changes
                        .iter()
                        .map(|c| c.replacement)
                        .max()
                        .unwrap_or(Replacement::No),
                    changes,
                })
            }
            (None, None) => None,
        })
        .collect()
}

/// Outputs whose value or presence differs.
pub fn outputs(old: &Value, new: &Value) -> Vec<ValueChange> {
    let (a, b) = (section(old, "Outputs"), section(new, "Outputs"));
    let names: BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    names
        .into_iter()
        .filter(|n| a.get(n) != b.get(n))
        .map(|n| {
            // The value, unless only something else (its export, its description) changed.
            let same_value = a.get(n).map(|v| &v["Value"]) == b.get(n).map(|v| &v["Value"]);
            let shown = |v: &&Value| {
                if same_value {
                    (*v).clone()
                } else {
                    v["Value"].clone()
                }
            };
            ValueChange {
                name: n.to_owned(),
                old: a.get(n).map(shown),
                new: b.get(n).map(shown),
                used_by: Vec::new(),
            }
        })
        .collect()
}

/// Parameters whose value differs: deployed (from the stack) → what a deploy would pass, each with
/// the resources of `template` that use it.
pub fn parameters(
    deployed: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
    template: &Value,
) -> Vec<ValueChange> {
    let names: BTreeSet<&String> = deployed.keys().chain(ours.keys()).collect();
    names
        .into_iter()
        .filter(|n| deployed.get(*n) != ours.get(*n))
        .map(|n| ValueChange {
            name: n.clone(),
            old: deployed.get(n).map(|v| Value::String(v.clone())),
            new: ours.get(n).map(|v| Value::String(v.clone())),
            used_by: users_of(template, n),
        })
        .collect()
}

/// The resources of `template` whose definition uses parameter `name` (`Ref` or `${name}` in a `Sub`).
pub fn users_of(template: &Value, name: &str) -> Vec<String> {
    fn uses(v: &Value, name: &str) -> bool {
        match v {
            Value::Object(m) => {
                if m.len() == 1 {
                    match m.iter().next() {
                        Some((k, Value::String(arg))) if k == "Ref" && arg == name => return true,
                        Some((k, Value::String(text))) if k == "Fn::Sub" => {
                            return text.contains(&format!("${{{name}}}"));
                        }
                        Some((k, Value::Array(args))) if k == "Fn::Sub" => {
                            let text = args.first().and_then(Value::as_str).unwrap_or("");
                            // A name the Sub binds itself is not the parameter.
                            let bound = args.get(1).is_some_and(|b| b.get(name).is_some());
                            return (!bound && text.contains(&format!("${{{name}}}")))
                                || args.iter().skip(1).any(|a| uses(a, name));
                        }
                        _ => {}
                    }
                }
                m.values().any(|x| uses(x, name))
            }
            Value::Array(items) => items.iter().any(|x| uses(x, name)),
            _ => false,
        }
    }
    section(template, "Resources")
        .into_iter()
        .filter(|(_, r)| uses(r, name))
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// A value as one short line: strings bare, anything else as compact JSON.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every permission `template` grants, one action per grant.
pub fn grants(template: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (id, r) in section(template, "Resources") {
        let props = &r["Properties"];
        let mut documents: Vec<&Value> = Vec::new();
        match r["Type"].as_str().unwrap_or("") {
            "AWS::IAM::Role" => {
                // Who may assume it, then what it may do.
                documents.push(&props["AssumeRolePolicyDocument"]);
                for p in one_or_many(&props["Policies"]) {
                    documents.push(&p["PolicyDocument"]);
                }
                for arn in one_or_many(&props["ManagedPolicyArns"]) {
                    out.insert(Grant {
                        by: id.to_owned(),
                        effect: "Allow".into(),
                        action: "managed policy".into(),
                        on: show(arn),
                        principal: None,
                        condition: None,
                    });
                }
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::SQS::QueuePolicy"
            | "AWS::S3::BucketPolicy"
            | "AWS::SNS::TopicPolicy" => {
                documents.push(&props["PolicyDocument"]);
            }
            "AWS::Lambda::Permission" => {
                out.insert(Grant {
                    by: id.to_owned(),
                    effect: "Allow".into(),
                    action: show(&props["Action"]),
                    on: show(&props["FunctionName"]),
                    principal: Some(show(&props["Principal"])),
                    condition: props
                        .get("SourceArn")
                        .map(|a| format!("SourceArn = {}", show(a))),
                });
            }
            _ => {}
        }
        for doc in documents {
            for st in one_or_many(&doc["Statement"]) {
                let join = |v: &Value| -> String {
                    let all: Vec<String> = one_or_many(v).into_iter().map(show).collect();
                    all.join(", ")
                };
                let on = match (&st["Resource"], &st["NotResource"]) {
                    // A trust policy: the statement is about the role itself.
                    (Value::Null, Value::Null) => "(this resource)".to_owned(),
                    (Value::Null, not) => format!("everything but {}", join(not)),
                    (resources, _) => join(resources),
                };
                let principal = st.get("Principal").map(show);
                let condition = st.get("Condition").map(show);
                let actions = one_or_many(&st["Action"]).into_iter().map(show);
                let all_but = one_or_many(&st["NotAction"])
                    .into_iter()
                    .map(|a| format!("every action but {}", show(a)));
                for action in actions.chain(all_but) {
                    out.insert(Grant {
                        by: id.to_owned(),
                        effect: show(&st["Effect"]),
                        action,
                        on: on.clone(),
                        principal: principal.clone(),
                        condition: condition.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Grants `new` makes that `old` did not, and the other way round.
pub fn iam(old: &Value, new: &Value) -> IamDiff {
    let (a, b) = (grants(old), grants(new));
    IamDiff {
        granted: b.difference(&a).cloned().collect(),
        revoked: a.difference(&b).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::parse;

    const OLD: &str = r#"
Parameters:
  Stage: {Type: String}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${Stage}-notes"
      BillingMode: PAY_PER_REQUEST
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      MemorySize: 256
      Environment: {Variables: {TABLE: !Ref Table, MODE: a}}
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:PutItem]
                Resource: !GetAtt Table.Arn
  Gone:
    Type: AWS::SQS::Queue
Outputs:
  TableName: {Value: !Ref Table}
  Old: {Value: x}
"#;

    const NEW: &str = r#"
Parameters:
  Stage: {Type: String}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${Stage}-notes-v2"
      BillingMode: PAY_PER_REQUEST
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      MemorySize: 512
      Environment: {Variables: {TABLE: {Ref: Table}}}
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:DeleteItem]
                Resource: {"Fn::GetAtt": [Table, Arn]}
  Perm:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Fn
      Principal: apigateway.amazonaws.com
  Thing:
    Type: AWS::Some::New
    Properties: {A: 1}
Outputs:
  TableName: {Value: !Ref Table}
  New: {Value: y}
"#;

    /// Added, removed and modified resources, each change with its path, old and new value, and
    /// whether it replaces the resource; short and long forms of a function are the same.
    #[test]
    fn resources_are_compared_property_by_property() {
        let (old, new) = (parse(OLD).unwrap(), parse(NEW).unwrap());
        let diff = resources(&old, &new);
        let summary: Vec<(&str, Action, Replacement)> = diff
            .iter()
            .map(|d| (d.logical_id.as_str(), d.action, d.replacement))
            .collect();
        assert_eq!(
            summary,
            [
                ("Fn", Action::Modified, Replacement::No),
                ("Gone", Action::Removed, Replacement::No),
                ("Perm", Action::Added, Replacement::No),
                ("Role", Action::Modified, Replacement::No),
                ("Table", Action::Modified, Replacement::Yes),
                ("Thing", Action::Added, Replacement::No),
            ]
        );
        let fun = &diff[0];
        let changes: Vec<(&str, Option<&Value>, Option<&Value>)> = fun
            .changes
            .iter()
            .map(|c| (c.path.as_str(), c.old.as_ref(), c.new.as_ref()))
            .collect();
        assert_eq!(
            changes,
            [
                (
                    "Properties.Environment.Variables.MODE",
                    Some(&Value::from("a")),
                    None
                ),
                (
                    "Properties.MemorySize",
                    Some(&Value::from(256)),
                    Some(&Value::from(512))
                ),
            ],
            "TABLE is !Ref in one and {{Ref}} in the other: the same"
        );
        assert_eq!(diff[4].changes.len(), 1);
        assert_eq!(diff[4].changes[0].path, "Properties.TableName");
        assert_eq!(diff[4].changes[0].replacement, Replacement::Yes);
        assert_eq!(
            diff[3].changes[0].path,
            "Properties.Policies[0].PolicyDocument.Statement[0].Action[1]"
        );
    }

    #[test]
    fn replacement_comes_from_the_property_and_the_type() {
        assert_eq!(
            replacement("AWS::SQS::Queue", "Properties.QueueName"),
            Replacement::Yes
        );
        assert_eq!(
            replacement("AWS::SQS::Queue", "Properties.VisibilityTimeout"),
            Replacement::No
        );
        assert_eq!(
            replacement(
                "AWS::DynamoDB::Table",
                "Properties.KeySchema[0].AttributeName"
            ),
            Replacement::Yes
        );
        assert_eq!(
            replacement("AWS::Lambda::Function", "Properties.Code.S3Key"),
            Replacement::No
        );
        assert_eq!(replacement("AWS::SQS::Queue", "Type"), Replacement::Yes);
        assert_eq!(replacement("AWS::SQS::Queue", "DependsOn"), Replacement::No);
        assert_eq!(
            replacement("AWS::Some::New", "Properties.A"),
            Replacement::Unknown
        );
    }

    /// Every resource type the app's templates use has its update behaviour here, so `diff` never
    /// says "unknown" about them.
    #[test]
    fn every_type_in_the_templates_is_known() {
        for short in crate::aws::stacks::STACKS {
            let path = format!("{}/../templates/{short}.yaml", env!("CARGO_MANIFEST_DIR"));
            let t = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for (id, r) in section(&t, "Resources") {
                let ty = r["Type"].as_str().unwrap();
                assert!(
                    REPLACED_BY.iter().any(|(t, _)| *t == ty),
                    "{path}: {id} is a {ty}, whose update behaviour is not in REPLACED_BY"
                );
            }
        }
    }

    /// IAM grants are compared as sets of (who, effect, action, on): an action swapped in a
    /// statement is one grant and one revocation, and a Lambda permission is a grant to its principal.
    #[test]
    fn iam_changes_are_grants_and_revocations() {
        let diff = iam(&parse(OLD).unwrap(), &parse(NEW).unwrap());
        let show = |g: &[Grant]| -> Vec<String> {
            g.iter()
                .map(|g| {
                    format!(
                        "{} {} {} on {} {:?}",
                        g.by, g.effect, g.action, g.on, g.principal
                    )
                })
                .collect()
        };
        assert_eq!(
            show(&diff.granted),
            [
                "Perm Allow lambda:InvokeFunction on {\"Ref\":\"Fn\"} Some(\"apigateway.amazonaws.com\")",
                "Role Allow dynamodb:DeleteItem on {\"Fn::GetAtt\":[\"Table\",\"Arn\"]} None",
            ]
        );
        assert_eq!(
            show(&diff.revoked),
            ["Role Allow dynamodb:PutItem on {\"Fn::GetAtt\":[\"Table\",\"Arn\"]} None"]
        );
        assert!(iam(&parse(OLD).unwrap(), &parse(OLD).unwrap()).is_empty());
    }

    #[test]
    fn a_parameter_is_used_by_the_resources_that_ref_or_sub_it() {
        let t = parse(
            r#"
Resources:
  A: {Type: X, Properties: {N: !Sub "${Stage}-a"}}
  B: {Type: X, Properties: {N: !Ref Stage}}
  C: {Type: X, Properties: {N: !Sub ["${Stage}-c", {Stage: fixed}]}}
  D: {Type: X, Properties: {N: !Sub ["${S}-d", {S: !Ref Stage}]}}
  E: {Type: X, Properties: {N: StageName}}
"#,
        )
        .unwrap();
        assert_eq!(users_of(&t, "Stage"), ["A", "B", "D"]);
    }

    #[test]
    fn outputs_and_parameters_show_old_and_new() {
        let out = outputs(&parse(OLD).unwrap(), &parse(NEW).unwrap());
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["New", "Old"]);
        let deployed = BTreeMap::from([
            ("Stage".to_owned(), "p".to_owned()),
            ("CodeKey".to_owned(), "p/a.zip".to_owned()),
        ]);
        let ours = BTreeMap::from([
            ("Stage".to_owned(), "p".to_owned()),
            ("CodeKey".to_owned(), "p/b.zip".to_owned()),
            ("Memory".to_owned(), "256".to_owned()),
        ]);
        let t = parse("Resources:\n  Fn: {Type: X, Properties: {Code: {S3Key: !Ref CodeKey}}}\n")
            .unwrap();
        let p = parameters(&deployed, &ours, &t);
        assert_eq!(
            p,
            [
                ValueChange {
                    name: "CodeKey".into(),
                    old: Some("p/a.zip".into()),
                    new: Some("p/b.zip".into()),
                    used_by: vec!["Fn".into()],
                },
                ValueChange {
                    name: "Memory".into(),
                    old: None,
                    new: Some("256".into()),
                    used_by: vec![],
                },
            ]
        );
    }
}
