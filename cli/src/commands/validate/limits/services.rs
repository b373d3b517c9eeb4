//! Each service's limits on the resources the templates declare: IAM policy sizes, a function's
//! environment, description, memory and timeout, a queue's settings and redrive count, an event
//! pattern's size, API Gateway route keys and stage names, a dashboard's widgets and log retention.
//! Sources: each rule's doc comment in [`Rule`](super::super::Rule).

use serde_json::Value;

use super::super::model::{App, Res, one_or_many};
use super::super::{Finding, Rule};
use super::worst::Worst;
use super::{check_range, counted, thousands};

pub const MAX_INLINE_POLICIES: usize = 10_240;
pub const MAX_TRUST_POLICY: usize = 2_048;
pub const MAX_MANAGED_POLICY: usize = 6_144;
pub const MAX_ENVIRONMENT: usize = 4_096;
pub const MAX_FUNCTION_DESCRIPTION: usize = 256;
pub const MAX_EVENT_PATTERN: usize = 2_048;
pub const MAX_WIDGETS: usize = 500;
pub const RETENTION_DAYS: &[u64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// Variables Lambda sets itself, which a function's `Environment` may not.
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub fn check(app: &App, worst: &Worst, out: &mut Vec<Finding>) {
    for r in app.resources() {
        match app.ty(r) {
            "AWS::IAM::Role" => role(app, worst, r, out),
            "AWS::IAM::ManagedPolicy" => {
                let doc = worst.document(r.stack, &app.props(r)["PolicyDocument"]);
                policy_size(
                    app,
                    r,
                    "the managed policy",
                    &doc,
                    MAX_MANAGED_POLICY,
                    Rule::PolicyDocumentSize,
                    out,
                );
            }
            "AWS::Lambda::Function" => function(app, worst, r, out),
            "AWS::SQS::Queue" => queue(app, r, out),
            "AWS::Events::Rule" => event_pattern(app, worst, r, out),
            "AWS::ApiGatewayV2::Route" => route_key(app, worst, r, out),
            "AWS::ApiGatewayV2::Stage" => stage_name(app, worst, r, out),
            "AWS::CloudWatch::Dashboard" => dashboard(app, worst, r, out),
            "AWS::Logs::LogGroup" => retention(app, r, out),
            _ => {}
        }
    }
}

fn policy_size(
    app: &App,
    r: Res,
    what: &str,
    doc: &Value,
    limit: usize,
    rule: Rule,
    out: &mut Vec<Finding>,
) {
    let size = counted(&doc.to_string());
    if size > limit {
        out.push(Finding::new(
            rule,
            app,
            r,
            format!(
                "{what} is {} characters (whitespace not counted, every name at its longest), over IAM's {}",
                thousands(size),
                thousands(limit)
            ),
            "merge statements that share an effect and resources, or move grants to another role",
        ));
    }
}

/// A role's trust policy, and all its inline policies together: its own `Policies` and every
/// `AWS::IAM::Policy`/`AWS::IAM::RolePolicy` of the template attached to it.
fn role(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let props = app.props(r);
    let trust = worst.document(r.stack, &props["AssumeRolePolicyDocument"]);
    policy_size(
        app,
        r,
        "the trust policy",
        &trust,
        MAX_TRUST_POLICY,
        Rule::PolicyDocumentSize,
        out,
    );
    let mut documents: Vec<Value> = one_or_many(&props["Policies"])
        .into_iter()
        .map(|p| worst.document(r.stack, &p["PolicyDocument"]))
        .collect();
    for other in app.resources().filter(|o| o.stack == r.stack) {
        let p = app.props(other);
        let attached = match app.ty(other) {
            "AWS::IAM::Policy" => one_or_many(&p["Roles"])
                .into_iter()
                .any(|x| app.resource_of(r.stack, x) == Some(r)),
            "AWS::IAM::RolePolicy" => app.resource_of(r.stack, &p["RoleName"]) == Some(r),
            _ => false,
        };
        if attached {
            documents.push(worst.document(r.stack, &p["PolicyDocument"]));
        }
    }
    let size: usize = documents.iter().map(|d| counted(&d.to_string())).sum();
    if size > MAX_INLINE_POLICIES {
        out.push(Finding::new(
            Rule::InlinePolicySize,
            app,
            r,
            format!(
                "the role's {} inline policies are {} characters together (whitespace not counted, every name at its longest), over IAM's {}",
                documents.len(),
                thousands(size),
                thousands(MAX_INLINE_POLICIES)
            ),
            "merge statements that share an effect and resources, or give the grant to a managed policy",
        ));
    }
}

fn function(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let props = app.props(r);
    let mut size = 0;
    let vars = props["Environment"]["Variables"].as_object();
    for (name, value) in vars.into_iter().flatten() {
        size += name.len() + worst.text(r.stack, value).len();
        let well_formed = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed || RESERVED.contains(&name.as_str()) {
            out.push(Finding::new(
                Rule::EnvironmentSize,
                app,
                r,
                format!(
                    "the variable {name} {}",
                    if well_formed {
                        "is one Lambda sets itself (reserved)"
                    } else {
                        "is not a name Lambda accepts ([a-zA-Z][a-zA-Z0-9_]+)"
                    }
                ),
                "rename the variable (and the code that reads it)",
            ));
        }
    }
    if size > MAX_ENVIRONMENT {
        out.push(Finding::new(
            Rule::EnvironmentSize,
            app,
            r,
            format!(
                "its environment is {} bytes of names and values with the longest stage and every reference at its longest, over Lambda's 4 KB ({} bytes)",
                thousands(size),
                thousands(MAX_ENVIRONMENT)
            ),
            "pass less through the environment: read large values at init (SSM, Secrets Manager)",
        ));
    }
    if let Some(d) = props.get("Description") {
        let len = worst.text(r.stack, d).chars().count();
        if len > MAX_FUNCTION_DESCRIPTION {
            out.push(Finding::new(
                Rule::FunctionDescription,
                app,
                r,
                format!(
                    "its Description is {len} characters, over Lambda's {MAX_FUNCTION_DESCRIPTION}"
                ),
                "shorten the description",
            ));
        }
    }
    let range = |rule, what, expr: &Value, bounds, unit, out: &mut Vec<Finding>| {
        check_range(app, r, rule, what, expr, bounds, unit, out)
    };
    range(
        Rule::FunctionMemory,
        "MemorySize",
        &props["MemorySize"],
        (128.0, 10240.0),
        "MB",
        out,
    );
    range(
        Rule::FunctionMemory,
        "EphemeralStorage",
        &props["EphemeralStorage"]["Size"],
        (512.0, 10240.0),
        "MB",
        out,
    );
    range(
        Rule::FunctionTimeout,
        "Timeout",
        &props["Timeout"],
        (1.0, 900.0),
        "seconds",
        out,
    );
}

fn queue(app: &App, r: Res, out: &mut Vec<Finding>) {
    let props = app.props(r);
    for (prop, bounds, unit) in [
        ("VisibilityTimeout", (0.0, 43_200.0), "seconds"),
        ("MessageRetentionPeriod", (60.0, 1_209_600.0), "seconds"),
        ("DelaySeconds", (0.0, 900.0), "seconds"),
        ("ReceiveMessageWaitTimeSeconds", (0.0, 20.0), "seconds"),
        ("MaximumMessageSize", (1_024.0, 1_048_576.0), "bytes"),
    ] {
        check_range(
            app,
            r,
            Rule::QueueSettings,
            prop,
            &props[prop],
            bounds,
            unit,
            out,
        );
    }
    check_range(
        app,
        r,
        Rule::ReceiveCount,
        "RedrivePolicy.maxReceiveCount",
        &props["RedrivePolicy"]["maxReceiveCount"],
        (1.0, 1_000.0),
        "receives",
        out,
    );
}

fn event_pattern(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let pattern = &app.props(r)["EventPattern"];
    if pattern.is_null() {
        return;
    }
    let text = match worst.document(r.stack, pattern) {
        Value::String(s) => s,
        doc => doc.to_string(),
    };
    let len = text.chars().count();
    if len > MAX_EVENT_PATTERN {
        out.push(Finding::new(
            Rule::EventPatternSize,
            app,
            r,
            format!(
                "its EventPattern is {} characters as JSON, over EventBridge's default quota of {}",
                thousands(len),
                thousands(MAX_EVENT_PATTERN)
            ),
            "match on fewer values (a prefix, or one detail-type per rule), or raise the quota first",
        ));
    }
}

const METHODS: &[&str] = &[
    "ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
];

/// Why `path` is not an HTTP API route path, if it is not.
fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("the path does not start with '/'".into());
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segments.iter().enumerate() {
        if s.is_empty() && segments.len() != 1 {
            return Some("the path has an empty segment".into());
        }
        if let Some(var) = s.strip_prefix('{') {
            let Some(var) = var.strip_suffix('}') else {
                return Some(format!(
                    "the segment {s:?} opens a variable it does not close"
                ));
            };
            if var.ends_with('+') && i + 1 != segments.len() {
                return Some(format!("the greedy variable {s:?} is not the last segment"));
            }
        } else if s.contains(['{', '}']) {
            return Some(format!("the segment {s:?} mixes text and a variable"));
        }
    }
    None
}

fn route_key(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let props = app.props(r);
    let key = worst.text(r.stack, &props["RouteKey"]);
    let protocol = app.resource_of(r.stack, &props["ApiId"]).map(|api| {
        app.props(api)["ProtocolType"]
            .as_str()
            .unwrap_or("HTTP")
            .to_owned()
    });
    let problem = match protocol.as_deref() {
        _ if key == "$default" => None,
        Some("WEBSOCKET") => (key.is_empty()).then(|| "is empty".to_owned()),
        // An HTTP API (or one this template cannot see, which the app's only is).
        _ => match key.split_once(' ') {
            Some((method, path)) if METHODS.contains(&method) => path_problem(path),
            Some((method, _)) => Some(format!(
                "has the method {method:?}, which is not one of {METHODS:?}"
            )),
            None if key.starts_with('$') => {
                Some(format!("is {key:?}: an HTTP API knows only $default"))
            }
            None => Some("is not `METHOD /path`".to_owned()),
        },
    };
    if let Some(why) = problem {
        out.push(Finding::new(
            Rule::RouteKey,
            app,
            r,
            format!("the route key {key:?} {why}"),
            "write it as `GET /notes/{noteId}` (an HTTP API) or `$connect`/`$disconnect`/`$default`",
        ));
    }
}

fn stage_name(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let props = app.props(r);
    let name = worst.text(r.stack, &props["StageName"]);
    let websocket = app
        .resource_of(r.stack, &props["ApiId"])
        .is_some_and(|api| app.props(api)["ProtocolType"] == "WEBSOCKET");
    if name == "$default" && websocket {
        out.push(Finding::new(
            Rule::StageName,
            app,
            r,
            "a WebSocket API's stage cannot be $default (only an HTTP API's can)".into(),
            "name the stage after the app's Stage: !Ref Stage",
        ));
    }
}

fn dashboard(app: &App, worst: &Worst, r: Res, out: &mut Vec<Finding>) {
    let body = worst.text(r.stack, &app.props(r)["DashboardBody"]);
    match serde_json::from_str::<Value>(&body) {
        Ok(doc) => {
            let widgets = doc["widgets"].as_array().map_or(0, Vec::len);
            if widgets > MAX_WIDGETS {
                out.push(Finding::new(
                    Rule::Dashboard,
                    app,
                    r,
                    format!("the dashboard has {widgets} widgets, over CloudWatch's {MAX_WIDGETS}"),
                    "split it into two dashboards",
                ));
            }
        }
        Err(e) => out.push(Finding::new(
            Rule::Dashboard,
            app,
            r,
            format!(
                "its DashboardBody is not JSON once substituted ({e}): PutDashboard refuses it"
            ),
            "check the body's JSON (quotes around every substituted string)",
        )),
    }
}

fn retention(app: &App, r: Res, out: &mut Vec<Finding>) {
    let expr = &app.props(r)["RetentionInDays"];
    if expr.is_null() {
        return;
    }
    // A literal, a parameter's AllowedValues or a mapping's entries: each one checked. Anything
    // else (a MinValue..MaxValue parameter, an import) can be a value CloudWatch Logs refuses.
    let Some(values) = super::values(app, r.stack, expr) else {
        out.push(Finding::new(
            Rule::LogRetention,
            app,
            r,
            "RetentionInDays can be any number; CloudWatch Logs accepts only its list of values"
                .into(),
            format!("give the parameter AllowedValues from {RETENTION_DAYS:?}"),
        ));
        return;
    };
    let allowed = |v: f64| v.fract() == 0.0 && RETENTION_DAYS.contains(&(v as u64));
    for v in values.into_iter().filter(|v| !allowed(*v)) {
        out.push(Finding::new(
            Rule::LogRetention,
            app,
            r,
            format!("RetentionInDays {v} is not one CloudWatch Logs accepts"),
            format!("use one of {RETENTION_DAYS:?}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_route_paths() {
        assert_eq!(path_problem("/notes/{noteId}"), None);
        assert_eq!(path_problem("/{proxy+}"), None);
        assert_eq!(path_problem("/"), None);
        assert!(path_problem("notes").is_some());
        assert!(path_problem("/{proxy+}/x").is_some());
        assert!(path_problem("/a{b}").is_some());
        assert!(path_problem("/a//b").is_some());
    }
}
