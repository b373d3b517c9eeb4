//! CloudFormation's own limits on a template: its size, how many resources, parameters, outputs and
//! mappings it has, how its ids are spelled, its description, and its export names — unique within a
//! region, across the six stacks and across stages. Sources: each rule's doc comment in
//! [`Rule`](super::super::Rule).

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::model::App;
use super::super::stacks::stack_finding;
use super::super::{Finding, Rule};
use super::thousands;
use super::worst::Worst;
use crate::template::intrinsic;

/// The most a template may be in a request's `TemplateBody`.
pub const BODY_LIMIT: usize = 51_200;
/// The most a template may be from S3 (`TemplateURL`): "1 MB", read as the smaller 1,000,000 bytes.
pub const URL_LIMIT: usize = 1_000_000;
pub const MAX_RESOURCES: usize = 500;
pub const MAX_PARAMETERS: usize = 200;
pub const MAX_OUTPUTS: usize = 200;
pub const MAX_MAPPINGS: usize = 200;
pub const MAX_MAPPING_ATTRIBUTES: usize = 200;
pub const MAX_ID: usize = 255;
pub const MAX_DESCRIPTION: usize = 1024;

pub fn check(app: &App, worst: &Worst, out: &mut Vec<Finding>) {
    for (i, stack) in app.stacks.iter().enumerate() {
        size(app, i, stack.bytes, out);
        counts(app, i, out);
        ids(app, i, out);
        descriptions(app, i, out);
    }
    exports(app, worst, out);
}

fn size(app: &App, i: usize, bytes: usize, out: &mut Vec<Finding>) {
    let rule = Rule::TemplateSize;
    if bytes > URL_LIMIT {
        out.push(stack_finding(
            app,
            i,
            "",
            rule,
            format!(
                "the template is {} bytes, over the {} bytes CloudFormation reads from S3 (TemplateURL)",
                thousands(bytes),
                thousands(URL_LIMIT)
            ),
            "split it into two stacks (outputs and Fn::ImportValue), or shorten it (the dashboard body, comments)".into(),
        ));
    } else if bytes > BODY_LIMIT {
        out.push(
            stack_finding(
                app,
                i,
                "",
                rule,
                format!(
                    "the template is {} bytes, over the {} bytes CloudFormation takes in a request body: notesctl deploys it by URL (up to {} bytes), but a tool that sends it as TemplateBody is refused",
                    thousands(bytes),
                    thousands(BODY_LIMIT),
                    thousands(URL_LIMIT)
                ),
                "nothing, with notesctl; with the AWS CLI, `aws cloudformation deploy --s3-bucket …` (never --template-body)".into(),
            )
            .warning(),
        );
    }
}

fn counts(app: &App, i: usize, out: &mut Vec<Finding>) {
    let doc = &app.stacks[i].doc;
    let count = |section: &str| doc[section].as_object().map_or(0, |m| m.len());
    for (section, rule, limit) in [
        ("Resources", Rule::ResourceCount, MAX_RESOURCES),
        ("Parameters", Rule::ParameterCount, MAX_PARAMETERS),
        ("Outputs", Rule::OutputCount, MAX_OUTPUTS),
        ("Mappings", Rule::MappingCount, MAX_MAPPINGS),
    ] {
        let n = count(section);
        if n > limit {
            out.push(stack_finding(
                app,
                i,
                "",
                rule,
                format!(
                    "{n} {} in the template, over CloudFormation's {limit}",
                    section.to_lowercase()
                ),
                format!("move some of them to another stack (each of the six may hold {limit})"),
            ));
        }
    }
    for (name, mapping) in doc["Mappings"].as_object().into_iter().flatten() {
        for (key, attributes) in mapping.as_object().into_iter().flatten() {
            let n = attributes.as_object().map_or(0, |m| m.len());
            if n > MAX_MAPPING_ATTRIBUTES {
                out.push(stack_finding(
                    app,
                    i,
                    name,
                    Rule::MappingCount,
                    format!("the mapping's key {key} has {n} attributes, over CloudFormation's {MAX_MAPPING_ATTRIBUTES}"),
                    "split the mapping in two".into(),
                ));
            }
        }
        let keys = mapping.as_object().map_or(0, |m| m.len());
        if keys > MAX_MAPPING_ATTRIBUTES {
            out.push(stack_finding(
                app,
                i,
                name,
                Rule::MappingCount,
                format!(
                    "the mapping has {keys} keys, over CloudFormation's {MAX_MAPPING_ATTRIBUTES}"
                ),
                "split the mapping in two".into(),
            ));
        }
    }
}

fn ids(app: &App, i: usize, out: &mut Vec<Finding>) {
    let doc = &app.stacks[i].doc;
    for (section, what) in [
        ("Resources", "logical id"),
        ("Parameters", "parameter name"),
        ("Outputs", "output name"),
        ("Mappings", "mapping name"),
        ("Conditions", "condition name"),
    ] {
        for id in doc[section].as_object().into_iter().flat_map(|m| m.keys()) {
            let alnum = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
            if id.chars().count() > MAX_ID {
                out.push(stack_finding(
                    app,
                    i,
                    id,
                    Rule::IdLength,
                    format!(
                        "the {what} is {} characters, over CloudFormation's {MAX_ID}",
                        id.chars().count()
                    ),
                    format!("shorten the {what}"),
                ));
            }
            if !alnum {
                out.push(stack_finding(
                    app,
                    i,
                    id,
                    Rule::IdLength,
                    format!("the {what} {id:?} is not alphanumeric (A–Z, a–z, 0–9), which CloudFormation requires"),
                    "rename it with letters and digits only".into(),
                ));
            }
        }
    }
}

fn descriptions(app: &App, i: usize, out: &mut Vec<Finding>) {
    let doc = &app.stacks[i].doc;
    let mut check = |id: &str, what: &str, d: &Value| {
        match d {
        Value::Null => {}
        Value::String(s) if s.len() <= MAX_DESCRIPTION => {}
        Value::String(s) => out.push(stack_finding(
            app,
            i,
            id,
            Rule::DescriptionLength,
            format!(
                "the {what} Description is {} bytes, over CloudFormation's {}",
                thousands(s.len()),
                thousands(MAX_DESCRIPTION)
            ),
            "shorten it (templates/README.md is the place for the long story)".into(),
        )),
        _ => out.push(stack_finding(
            app,
            i,
            id,
            Rule::DescriptionLength,
            format!("the {what} Description is not a literal string (CloudFormation takes no function there)"),
            "write it as plain text".into(),
        )),
    }
    };
    check("", "template's", &doc["Description"]);
    for (id, o) in doc["Outputs"].as_object().into_iter().flatten() {
        check(id, "output's", &o["Description"]);
    }
}

/// The key after `${Stage}-` in an export name written `!Sub "${Stage}-Key"`.
fn export_key(name: &Value) -> Option<&str> {
    match intrinsic(name) {
        Some(("Fn::Sub", Value::String(s))) => s.strip_prefix("${Stage}-"),
        _ => None,
    }
}

fn exports(app: &App, worst: &Worst, out: &mut Vec<Finding>) {
    let mut seen: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, stack) in app.stacks.iter().enumerate() {
        for (id, o) in stack.doc["Outputs"].as_object().into_iter().flatten() {
            let Some(name) = o.get("Export").map(|e| &e["Name"]) else {
                continue;
            };
            let refers_to_resource = app.targets(i, name).iter().any(|t| {
                matches!(
                    t,
                    super::super::model::Target::Resource(..)
                        | super::super::model::Target::Unexported(_)
                )
            });
            if refers_to_resource {
                out.push(stack_finding(
                    app,
                    i,
                    id,
                    Rule::ExportName,
                    "the export's name refers to a resource (Ref or GetAtt), which CloudFormation refuses".into(),
                    "build the name from ${Stage} and a fixed key: !Sub \"${Stage}-Key\"".into(),
                ));
                continue;
            }
            match export_key(name) {
                Some(key) if !key.is_empty() && !key.contains('-') && !key.contains("${") => {}
                _ => out.push(stack_finding(
                    app,
                    i,
                    id,
                    Rule::ExportName,
                    format!(
                        "the export name {} is not `${{Stage}}-Key` with a key free of hyphens: two stages could export the same name, and exports are unique per account and region",
                        super::super::model::sub_text(name).unwrap_or_else(|| name.to_string())
                    ),
                    "name it !Sub \"${Stage}-<OutputKey>\" (the output's key, no hyphens)".into(),
                )),
            }
            let shown = worst.text(i, name);
            if let Some((j, first)) = seen.get(&shown) {
                out.push(stack_finding(
                    app,
                    i,
                    id,
                    Rule::ExportName,
                    format!(
                        "exports the same name as {} {first}: a stage's second export of one name is refused",
                        app.stacks[*j].file
                    ),
                    "give one of them another key".into(),
                ));
            } else {
                seen.insert(shown, (i, id.clone()));
            }
        }
    }
}
