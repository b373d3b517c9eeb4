//! Each function against its handler's declaration: the handler exists and is deployed once, under its
//! name, with the zip deploy uploads; its environment gives exactly the declared variables, each
//! naming the right resource; its role grants exactly what the code, the trigger and Lambda's logging
//! need, each on that resource, and nothing with a wildcard.

use std::collections::{BTreeMap, BTreeSet};

use notes_handlers::HandlerName;
use notes_handlers::spec::{Action, Env, Resource, Spec};
use serde_json::Value;

use super::model::{App, Res, Target, one_or_many};
use super::{Finding, Rule, STAGE};
use crate::names;

/// Which of the app's resources `r` is, by its type and the name the app's convention gives it.
pub fn kind_of(app: &App, r: Res) -> Option<Resource> {
    let props = app.props(r);
    let name = |key: &str| {
        app.eval(r.stack, &props[key], &|p| {
            (p == "Stage").then(|| STAGE.to_owned())
        })
    };
    match app.ty(r) {
        "AWS::DynamoDB::Table" => match name("TableName")? {
            n if n == names::data_table(STAGE) => Some(Resource::DataTable),
            n if n == names::connections_table(STAGE) => Some(Resource::ConnectionsTable),
            _ => None,
        },
        "AWS::Events::EventBus" => Some(Resource::EventBus),
        "AWS::SecretsManager::Secret" => Some(Resource::JwtSecret),
        "AWS::ApiGatewayV2::Api" if props["ProtocolType"] == "WEBSOCKET" => {
            Some(Resource::WebSocketApi)
        }
        "AWS::SQS::Queue" if name("QueueName")? == names::queue(STAGE) => {
            Some(Resource::ProcessingQueue)
        }
        "AWS::Logs::LogGroup" => Some(Resource::LogGroup),
        _ => None,
    }
}

/// The app's resources `expr` refers to, with the log groups by name.
fn kinds<'a>(app: &'a App, stack: usize, expr: &'a Value) -> Vec<(Resource, Res<'a>)> {
    app.targets(stack, expr)
        .into_iter()
        .filter_map(|t| match t {
            Target::Resource(r, _) => kind_of(app, r).map(|k| (k, r)),
            _ => None,
        })
        .collect()
}

fn log_group_name(app: &App, r: Res) -> Option<String> {
    app.eval(r.stack, &app.props(r)["LogGroupName"], &|p| {
        (p == "Stage").then(|| STAGE.to_owned())
    })
}

/// The function of each handler (the first, if a template deploys one twice).
pub fn functions(app: &App) -> BTreeMap<HandlerName, Res<'_>> {
    let mut out = BTreeMap::new();
    for f in app.of_type("AWS::Lambda::Function") {
        if let Some(h) = app.props(f)["Handler"]
            .as_str()
            .and_then(|h| h.parse().ok())
        {
            out.entry(h).or_insert(f);
        }
    }
    out
}

pub fn check(app: &App, out: &mut Vec<Finding>) {
    let mut seen: BTreeMap<HandlerName, Res> = BTreeMap::new();
    for f in app.of_type("AWS::Lambda::Function") {
        let props = app.props(f);
        let given = props["Handler"].as_str().unwrap_or_default();
        let Ok(handler) = given.parse::<HandlerName>() else {
            out.push(Finding::new(
                Rule::Handler,
                app,
                f,
                format!("Handler is {given:?}, which notes-lambda does not serve"),
                "set Handler to one of the handlers of notes-lambda (auth-signup, …, websocket-notify)",
            ));
            continue;
        };
        if let Some(first) = seen.insert(handler, f) {
            out.push(Finding::new(
                Rule::Handler,
                app,
                f,
                format!("{handler} is deployed twice (also as {})", first.id),
                "keep one function per handler",
            ));
            continue;
        }
        let spec = handler.spec();
        function_itself(app, f, spec, out);
        environment(app, f, spec, out);
        role(app, f, spec, out);
    }
    for &h in HandlerName::ALL {
        if !seen.contains_key(&h) {
            let stack = app.stack_index("notes").unwrap_or(0);
            out.push(Finding {
                rule: Rule::Handler,
                severity: super::Severity::Error,
                file: app.stacks[stack].file.clone(),
                resource: String::new(),
                problem: format!("no function serves the handler {h}"),
                fix: format!(
                    "add an AWS::Lambda::Function with Handler: {h} (FunctionName ${{Stage}}-{h})"
                ),
            });
        }
    }
}

fn function_itself(app: &App, f: Res, spec: &Spec, out: &mut Vec<Finding>) {
    let props = app.props(f);
    let bind = |p: &str| (p == "Stage").then(|| STAGE.to_owned());
    let want = spec.function_name(STAGE);
    if app.eval(f.stack, &props["FunctionName"], &bind).as_deref() != Some(want.as_str()) {
        out.push(Finding::new(
            Rule::Handler,
            app,
            f,
            format!("FunctionName is not ${{Stage}}-{}", spec.name),
            format!(
                "set FunctionName: !Sub \"${{Stage}}-{}\" (notesctl finds functions and log groups by it)",
                spec.name
            ),
        ));
    }
    if props["Runtime"] != "provided.al2023" {
        out.push(Finding::new(
            Rule::Handler,
            app,
            f,
            "Runtime is not provided.al2023".into(),
            "set Runtime: provided.al2023 (the zip holds a bootstrap binary built for it)",
        ));
    }
    let refers = |v: &Value, param: &str| {
        app.targets(f.stack, v)
            .iter()
            .any(|t| matches!(t, Target::Param(_, p) if p == param))
    };
    if !refers(&props["Code"]["S3Bucket"], "CodeBucket")
        || !refers(&props["Code"]["S3Key"], "CodeKey")
    {
        out.push(Finding::new(
            Rule::Handler,
            app,
            f,
            "Code does not come from the CodeBucket and CodeKey parameters".into(),
            "set Code: {S3Bucket: !Ref CodeBucket, S3Key: !Ref CodeKey}: deploy uploads the zip there",
        ));
    }
}

fn environment(app: &App, f: Res, spec: &Spec, out: &mut Vec<Finding>) {
    let vars = app.props(f)["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let declared: BTreeSet<&str> = spec.env.iter().map(|e| e.name()).collect();
    for name in vars.keys() {
        if !declared.contains(name.as_str()) {
            out.push(Finding::new(
                Rule::Environment,
                app,
                f,
                format!("sets {name}, which {} does not read", spec.name),
                format!(
                    "remove {name}, or declare it for {} in the handlers' declaration",
                    spec.name
                ),
            ));
        }
    }
    for &env in spec.env {
        let Some(value) = vars.get(env.name()) else {
            out.push(Finding::new(
                Rule::Environment,
                app,
                f,
                format!("does not set {} ({})", env.name(), env.purpose()),
                format!("add {} to Environment.Variables", env.name()),
            ));
            continue;
        };
        if let Some(problem) = names_the_wrong_thing(app, f, env, value) {
            out.push(Finding::new(
                Rule::Environment,
                app,
                f,
                format!("{} {problem}", env.name()),
                format!("set {} to {}", env.name(), expected_value(env)),
            ));
        }
    }
}

fn expected_value(env: Env) -> &'static str {
    match env {
        Env::TableName => "the data table's name (!ImportValue ${Stage}-DataTableName)",
        Env::ConnectionsTableName => "the connections table's name (!Ref ConnectionsTable)",
        Env::EventBusName => "the event bus's name (!ImportValue ${Stage}-EventBusName)",
        Env::SecretArn => "the JWT secret's ARN (!Ref JwtSecret, or its export)",
        Env::WebsocketApiEndpoint => {
            "the WebSocket API's endpoint (!Sub \"https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}\")"
        }
        Env::WebsocketStage => "the WebSocket API's stage name (!Ref Stage)",
        Env::AllowedOrigin => "!Ref AllowedOrigin",
        Env::MaxReceiveCount => "the processing queue's maxReceiveCount",
        Env::PublicFeedShards => "!Ref PublicFeedShards",
        Env::NotifyConcurrency => "!Ref NotifyConcurrency",
    }
}

/// Why `value` is not what `env` must name, if it is not.
fn names_the_wrong_thing(app: &App, f: Res, env: Env, value: &Value) -> Option<String> {
    let resource = Resource::ALL.iter().copied().find(|r| r.env() == Some(env));
    if let Some(want) = resource {
        let found = kinds(app, f.stack, value);
        return match found.iter().find(|(k, _)| *k == want) {
            Some(_) => None,
            None if found.is_empty() => Some(format!(
                "names none of the app's resources (expected {want:?})"
            )),
            None => Some(format!(
                "names {} ({:?}), not the {want:?}",
                found[0].1.id, found[0].0
            )),
        };
    }
    let bind = |p: &str| (p == "Stage").then(|| STAGE.to_owned());
    match env {
        Env::AllowedOrigin | Env::PublicFeedShards | Env::NotifyConcurrency => {
            let param = match env {
                Env::AllowedOrigin => "AllowedOrigin",
                Env::NotifyConcurrency => "NotifyConcurrency",
                _ => "PublicFeedShards",
            };
            let is_param = app
                .targets(f.stack, value)
                .iter()
                .any(|t| matches!(t, Target::Param(_, p) if p == param));
            (!is_param).then(|| format!("does not come from the {param} parameter"))
        }
        Env::WebsocketStage => {
            let stage = app.of_type("AWS::ApiGatewayV2::Stage").find(|s| {
                kinds(app, s.stack, &app.props(*s)["ApiId"])
                    .iter()
                    .any(|(k, _)| *k == Resource::WebSocketApi)
            })?;
            let want = app.eval(stage.stack, &app.props(stage)["StageName"], &bind);
            let got = app.eval(f.stack, value, &bind);
            (want != got).then(|| format!("is {got:?}, not the WebSocket stage {want:?}"))
        }
        Env::MaxReceiveCount => {
            let queue = app
                .resources()
                .find(|r| kind_of(app, *r) == Some(Resource::ProcessingQueue))?;
            let want = app.eval(
                queue.stack,
                &app.props(queue)["RedrivePolicy"]["maxReceiveCount"],
                &bind,
            );
            let got = app.eval(f.stack, value, &bind);
            (want != got).then(|| {
                format!("is {got:?}, but the processing queue dead-letters after {want:?} receives")
            })
        }
        _ => None,
    }
}

/// What a role must grant for Lambda to write a function's traces (on `*`).
const TRACE_ACTIONS: [&str; 2] = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"];

/// Active tracing, with the grant it needs (Lambda refuses to create or update a function with
/// active tracing whose role cannot write traces); the grant without the tracing is a grant too many.
fn tracing(app: &App, f: Res, role: Res, granted: &BTreeSet<&str>, out: &mut Vec<Finding>) {
    let active = app.props(f)["TracingConfig"]["Mode"] == "Active";
    if !active {
        out.push(Finding::new(
            Rule::Tracing,
            app,
            f,
            "does not trace (TracingConfig Mode is not Active)".into(),
            "set TracingConfig: {Mode: Active}: a note is then one trace from publish through save to notify",
        ));
        if !granted.is_empty() {
            out.push(Finding::new(
                Rule::Tracing,
                app,
                role,
                "grants X-Ray writes to a function that does not trace".into(),
                "remove the statement, or set the function's TracingConfig Mode to Active",
            ));
        }
        return;
    }
    let missing: Vec<&str> = TRACE_ACTIONS
        .into_iter()
        .filter(|a| !granted.contains(a))
        .collect();
    if !missing.is_empty() {
        out.push(Finding::new(
            Rule::Tracing,
            app,
            role,
            format!(
                "does not grant {}, which active tracing needs",
                missing.join(" and ")
            ),
            "add a statement allowing xray:PutTraceSegments and xray:PutTelemetryRecords on \"*\" (Lambda refuses to create the function without them)",
        ));
    }
}

/// The `Allow` statements of a role's inline policies.
fn allowed_statements<'a>(app: &'a App, role: Res) -> impl Iterator<Item = &'a Value> + 'a {
    one_or_many(&app.props(role)["Policies"])
        .into_iter()
        .flat_map(|p| one_or_many(&p["PolicyDocument"]["Statement"]))
        .filter(|st| st["Effect"] == "Allow")
}

/// Every action the role of `handler`'s function grants, as the templates write them.
pub fn granted_actions(app: &App, handler: HandlerName) -> BTreeSet<String> {
    let Some(f) = functions(app).get(&handler).copied() else {
        return BTreeSet::new();
    };
    let Some(role) = app.resource_of(f.stack, &app.props(f)["Role"]) else {
        return BTreeSet::new();
    };
    allowed_statements(app, role)
        .flat_map(|st| one_or_many(&st["Action"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

fn role(app: &App, f: Res, spec: &Spec, out: &mut Vec<Finding>) {
    let Some(role) = app
        .resource_of(f.stack, &app.props(f)["Role"])
        .filter(|r| app.ty(*r) == "AWS::IAM::Role")
    else {
        out.push(Finding::new(
            Rule::Permissions,
            app,
            f,
            "Role is not an AWS::IAM::Role of this template".into(),
            "give the function its own role: Role: !GetAtt <Name>Role.Arn",
        ));
        return;
    };
    let props = app.props(role);
    if !one_or_many(&props["ManagedPolicyArns"]).is_empty() {
        out.push(Finding::new(
            Rule::Permissions,
            app,
            role,
            "has managed policies, whose actions cannot be checked here".into(),
            "replace ManagedPolicyArns with an inline policy of exactly the actions the handler needs",
        ));
    }
    let own_log_group = names::log_group(&spec.function_name(STAGE));
    // Lambda sends a failed asynchronous invocation to the function's destination as the function.
    let destination = super::destinations::on_failure_queue(app, f);
    let mut destination_granted = false;
    let mut granted: BTreeSet<Action> = BTreeSet::new();
    let mut trace_grants: BTreeSet<&str> = BTreeSet::new();
    for st in allowed_statements(app, role) {
        let actions: Vec<&str> = one_or_many(&st["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        // X-Ray's writes have no resource-level permissions: on * they are the tracing grant.
        if !actions.is_empty() && actions.iter().all(|a| TRACE_ACTIONS.contains(a)) {
            trace_grants.extend(actions);
            continue;
        }
        if !st["NotAction"].is_null() || !st["NotResource"].is_null() {
            out.push(Finding::new(
                Rule::Permissions,
                app,
                role,
                "uses NotAction/NotResource, which grant everything else".into(),
                "list the actions and resources instead",
            ));
        }
        let actions: Vec<&str> = one_or_many(&st["Action"])
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        for a in actions.iter().filter(|a| a.contains('*')) {
            out.push(Finding::new(
                Rule::Permissions,
                app,
                role,
                format!("grants the wildcard action {a}"),
                "name each action the handler calls",
            ));
        }
        for resource in one_or_many(&st["Resource"]) {
            if resource == "*"
                || resource
                    .as_str()
                    .is_some_and(|s| s.ends_with(":*") && !s.contains('/'))
            {
                out.push(Finding::new(
                    Rule::Permissions,
                    app,
                    role,
                    format!("grants {} on every resource (*)", actions.join(", ")),
                    "scope the statement to the resource the handler uses (its ARN, by GetAtt or import)",
                ));
                continue;
            }
            if let Some(queue) = destination
                && app.resource_of(role.stack, resource) == Some(queue)
            {
                if actions.iter().all(|a| *a == "sqs:SendMessage") {
                    destination_granted = true;
                } else {
                    out.push(Finding::new(
                        Rule::Permissions,
                        app,
                        role,
                        format!(
                            "grants {} on {}, the function's on-failure destination, where Lambda needs only sqs:SendMessage",
                            actions.join(", "),
                            queue.id
                        ),
                        "grant sqs:SendMessage alone on the destination queue",
                    ));
                }
                continue;
            }
            let found = kinds(app, role.stack, resource);
            let Some((kind, target)) = found.first().copied() else {
                out.push(Finding::new(
                    Rule::Permissions,
                    app,
                    role,
                    format!(
                        "grants {} on a resource that is none of the app's",
                        actions.join(", ")
                    ),
                    "point Resource at the table, bus, secret, queue, API or log group the handler uses",
                ));
                continue;
            };
            if kind == Resource::LogGroup
                && log_group_name(app, target).as_deref() != Some(own_log_group.as_str())
            {
                out.push(Finding::new(
                    Rule::Permissions,
                    app,
                    role,
                    format!("grants logging on {}, not {own_log_group}", target.id),
                    format!("scope the logging statement to the function's own log group ({own_log_group})"),
                ));
                continue;
            }
            for a in &actions {
                granted.insert(Action {
                    action: (*a).to_owned(),
                    on: kind,
                });
            }
        }
    }
    tracing(app, f, role, &trace_grants, out);
    if let Some(queue) = destination
        && !destination_granted
    {
        out.push(Finding::new(
            Rule::Permissions,
            app,
            role,
            format!(
                "does not grant sqs:SendMessage on {}, the function's on-failure destination: a failed invocation could not be kept there and is dropped",
                queue.id
            ),
            format!("add sqs:SendMessage on !GetAtt {}.Arn to the role's policy", queue.id),
        ));
    }
    let needed: BTreeSet<Action> = spec.role_actions().into_iter().collect();
    for missing in needed.difference(&granted) {
        out.push(Finding::new(
            Rule::Permissions,
            app,
            role,
            format!("does not grant {missing}, which {} needs", spec.name),
            format!(
                "add {} on the {:?} to the role's policy (AccessDenied at the first request otherwise)",
                missing.action, missing.on
            ),
        ));
    }
    for extra in granted.difference(&needed) {
        out.push(Finding::new(
            Rule::Permissions,
            app,
            role,
            format!("grants {extra}, which {} does not call", spec.name),
            format!(
                "remove {} from the role, or declare it for {} if its code calls it",
                extra.action, spec.name
            ),
        ));
    }
}
