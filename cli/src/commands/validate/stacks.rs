//! The stacks together: every import is exported by a stack deployed before it, deploy gives every
//! parameter a value, and the queue's visibility timeout outlasts six save timeouts for every timeout
//! the templates accept. (Names and their limits: [`limits::names`](super::limits::names).)

use serde_json::Value;

use notes_handlers::HandlerName;

use super::functions::functions;
use super::model::{App, Res, sub_text};
use super::{Finding, Rule};
use crate::aws::stacks::DEPLOY_PARAMETERS;
use crate::template::intrinsic;

pub fn check(app: &App, out: &mut Vec<Finding>) {
    imports(app, out);
    parameters(app, out);
    visibility(app, out);
}

fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a Value)) {
    f(v);
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, f)),
        Value::Object(m) => m.values().for_each(|x| walk(x, f)),
        _ => {}
    }
}

pub(super) fn stack_finding(
    app: &App,
    stack: usize,
    resource: &str,
    rule: Rule,
    problem: String,
    fix: String,
) -> Finding {
    Finding {
        rule,
        severity: super::Severity::Error,
        file: app.stacks[stack].file.clone(),
        resource: resource.to_owned(),
        problem,
        fix,
    }
}

fn imports(app: &App, out: &mut Vec<Finding>) {
    for (i, stack) in app.stacks.iter().enumerate() {
        let Some(resources) = stack.doc["Resources"].as_object() else {
            continue;
        };
        let places = resources.iter().map(|(id, r)| (id.as_str(), r)).chain(
            stack.doc["Outputs"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, o)| (id.as_str(), o)),
        );
        for (id, node) in places {
            walk(node, &mut |v| {
                let Some(("Fn::ImportValue", name)) = intrinsic(v) else {
                    return;
                };
                if app.exporter(i, name).is_some() {
                    return;
                }
                let shown = sub_text(name).unwrap_or_else(|| name.to_string());
                let later = (i + 1..app.stacks.len())
                    .find(|&j| app.exports(j).iter().any(|(n, _)| *n == name));
                let (problem, fix) = match later {
                    Some(j) => (
                        format!("imports {shown}, which {} exports, deployed after this stack", app.stacks[j].file),
                        "import only from stacks earlier in the deploy order (event, data, auth, websocket, notes, frontend)".to_owned(),
                    ),
                    None => (
                        format!("imports {shown}, which no stack exports"),
                        "export it from the stack that owns the resource (Outputs.<Key>.Export.Name), or fix the name".to_owned(),
                    ),
                };
                out.push(stack_finding(app, i, id, Rule::Import, problem, fix));
            });
        }
    }
}

fn parameters(app: &App, out: &mut Vec<Finding>) {
    for (i, stack) in app.stacks.iter().enumerate() {
        let params = stack.doc["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, p) in &params {
            if p.get("Default").is_none() && !DEPLOY_PARAMETERS.contains(&name.as_str()) {
                out.push(stack_finding(
                    app,
                    i,
                    name,
                    Rule::Parameter,
                    format!("parameter {name} has no default and deploy passes no value for it (CloudFormation refuses the stack)"),
                    format!("give {name} a Default, or have deploy pass it"),
                ));
            }
        }
        let has_functions = app.of_type("AWS::Lambda::Function").any(|f| f.stack == i);
        if has_functions {
            for needed in ["CodeBucket", "CodeKey", "Architecture"] {
                if !params.contains_key(needed) {
                    out.push(stack_finding(
                        app,
                        i,
                        needed,
                        Rule::Parameter,
                        format!("deploy passes {needed} to stacks with functions, and this template does not declare it"),
                        format!("declare the parameter {needed} and use it in every function"),
                    ));
                }
            }
        }
    }
}

/// Required fix 9: the processing queue's visibility timeout is at least six times save's timeout,
/// for every save timeout both templates accept.
fn visibility(app: &App, out: &mut Vec<Finding>) {
    let fns = functions(app);
    let Some(save) = fns.get(&HandlerName::NotesSave) else {
        return;
    };
    let Some(queue) = app.resources().find(|r| {
        super::functions::kind_of(app, *r) == Some(notes_handlers::spec::Resource::ProcessingQueue)
    }) else {
        return;
    };
    let allowed = |r: Res| -> Vec<String> {
        let p = &app.stacks[r.stack].doc["Parameters"]["SaveFunctionTimeout"];
        match p["AllowedValues"].as_array() {
            Some(vals) => vals
                .iter()
                .filter_map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_number().map(|n| n.to_string()))
                })
                .collect(),
            None => vec![
                p["Default"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| p["Default"].as_number().map(|n| n.to_string()))
                    .unwrap_or_default(),
            ],
        }
    };
    let (for_save, for_queue) = (allowed(*save), allowed(queue));
    if for_save != for_queue {
        out.push(Finding::new(
            Rule::Visibility,
            app,
            queue,
            format!(
                "SaveFunctionTimeout accepts {for_queue:?} here and {for_save:?} in {}",
                app.file(*save)
            ),
            "declare the same AllowedValues for SaveFunctionTimeout in both templates",
        ));
    }
    for v in &for_save {
        let bind = |p: &str| (p == "SaveFunctionTimeout").then(|| v.clone());
        let timeout = app
            .eval(save.stack, &app.props(*save)["Timeout"], &bind)
            .and_then(|t| t.parse::<u64>().ok());
        let visible = app
            .eval(queue.stack, &app.props(queue)["VisibilityTimeout"], &bind)
            .and_then(|t| t.parse::<u64>().ok());
        match (timeout, visible) {
            (Some(t), Some(vis)) if vis >= 6 * t => {}
            (Some(t), Some(vis)) => out.push(Finding::new(
                Rule::Visibility,
                app,
                queue,
                format!("with SaveFunctionTimeout {v}, VisibilityTimeout is {vis}s, below 6 × {t}s: a message reappears while save still works on it"),
                format!("make VisibilityTimeout at least {} for a {t}s save timeout", 6 * t),
            )),
            _ => out.push(Finding::new(
                Rule::Visibility,
                app,
                queue,
                format!("with SaveFunctionTimeout {v}, the queue's VisibilityTimeout or save's Timeout cannot be worked out"),
                "derive both from SaveFunctionTimeout (a mapping keyed by it for the queue, !Ref for the function)",
            )),
        }
    }
}
