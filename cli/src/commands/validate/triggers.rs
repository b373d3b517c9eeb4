//! Each handler is reached as declared: an HTTP or WebSocket route through an integration, with the
//! Lambda permission API Gateway needs; EventBridge rules with the declared detail-types, a
//! permission and a dead-letter queue; the processing queue through an event source mapping that
//! reports partial batch failures.

use std::collections::BTreeMap;

use notes_handlers::HandlerName;
use notes_handlers::domain::events::EVENT_SOURCE;
use notes_handlers::spec::{Resource, Trigger};
use serde_json::Value;

use super::functions::{functions, kind_of};
use super::model::{App, Res, one_or_many, sub_vars};
use super::{Finding, Rule, STAGE};
use crate::template::intrinsic;

/// The detail-types the processing queue receives.
pub const QUEUE_EVENTS: &[&str] = &["note-created"];

pub fn check(app: &App, out: &mut Vec<Finding>) {
    let fns = functions(app);
    routes(app, &fns, out);
    event_rules(app, &fns, out);
    queue_mapping(app, &fns, out);
}

fn handler_of(app: &App, f: Option<Res>) -> Option<HandlerName> {
    app.props(f?)["Handler"].as_str()?.parse().ok()
}

/// The API (and whether it is the WebSocket one) a route or permission's `ApiId` names.
fn api_of<'a>(app: &'a App, stack: usize, expr: &'a Value) -> Option<(Res<'a>, bool)> {
    let api = app
        .resource_of(stack, expr)
        .filter(|r| app.ty(*r) == "AWS::ApiGatewayV2::Api")?;
    Some((api, app.props(api)["ProtocolType"] == "WEBSOCKET"))
}

fn routes(app: &App, fns: &BTreeMap<HandlerName, Res>, out: &mut Vec<Finding>) {
    let mut found: BTreeMap<(bool, String), HandlerName> = BTreeMap::new();
    for route in app.of_type("AWS::ApiGatewayV2::Route") {
        let props = app.props(route);
        let key = props["RouteKey"].as_str().unwrap_or_default().to_owned();
        let Some((api, websocket)) = api_of(app, route.stack, &props["ApiId"]) else {
            out.push(Finding::new(
                Rule::Route,
                app,
                route,
                format!("{key}: ApiId names no API of the app"),
                "set ApiId to the HTTP API (!ImportValue ${Stage}-HttpApiId) or the WebSocket API",
            ));
            continue;
        };
        let integration = props["Target"]
            .get("Fn::Sub")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("integrations/"))
            .and_then(|t| sub_vars(t).into_iter().next())
            .and_then(|id| app.get(route.stack, &id))
            .filter(|r| app.ty(*r) == "AWS::ApiGatewayV2::Integration");
        let handler = integration.and_then(|i| {
            let uri = &app.props(i)["IntegrationUri"];
            handler_of(app, app.resource_of(i.stack, uri))
        });
        let Some(handler) = handler else {
            out.push(Finding::new(
                Rule::Route,
                app,
                route,
                format!("{key} reaches no function of notes-lambda"),
                "set Target: !Sub \"integrations/${<Integration>}\" with an AWS_PROXY integration whose IntegrationUri is the function's ARN",
            ));
            continue;
        };
        let declared = match handler.spec().trigger {
            Trigger::Http { method, path } => !websocket && key == format!("{method} {path}"),
            Trigger::WebSocket { route: r } => websocket && key == r,
            _ => false,
        };
        if !declared {
            out.push(Finding::new(
                Rule::Route,
                app,
                route,
                format!("{key} reaches {handler}, which is not triggered by it"),
                format!("route {key} to the handler that declares it, or remove the route"),
            ));
            continue;
        }
        found.insert((websocket, key.clone()), handler);
        if let Some(f) = fns.get(&handler) {
            route_permission(app, api, *f, websocket, &key, out);
        }
    }
    for (&handler, f) in fns {
        let (websocket, key) = match handler.spec().trigger {
            Trigger::Http { method, path } => (false, format!("{method} {path}")),
            Trigger::WebSocket { route } => (true, route.to_owned()),
            _ => continue,
        };
        if !found.contains_key(&(websocket, key.clone())) {
            out.push(Finding::new(
                Rule::Route,
                app,
                *f,
                format!("no route {key} reaches {handler}"),
                format!(
                    "add an AWS::ApiGatewayV2::Route with RouteKey: {key} on the {} API and its integration",
                    if websocket { "WebSocket" } else { "HTTP" }
                ),
            ));
        }
    }
}

/// `*` matches any run of characters, as in an ARN pattern.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head) && (head.len()..=text.len()).any(|i| glob(tail, &text[i..]))
        }
    }
}

/// A `Lambda::Permission` for `f` from `principal`, whose `SourceArn` passes `covers`.
fn permission<'a>(
    app: &'a App,
    f: Res,
    principal: &str,
    covers: impl Fn(Res<'a>, &'a Value) -> bool,
) -> bool {
    app.of_type("AWS::Lambda::Permission").any(|p| {
        let props = app.props(p);
        app.resource_of(p.stack, &props["FunctionName"]) == Some(f)
            && props["Principal"] == principal
            && props["Action"] == "lambda:InvokeFunction"
            && covers(p, &props["SourceArn"])
    })
}

fn route_permission(
    app: &App,
    api: Res,
    f: Res,
    websocket: bool,
    key: &str,
    out: &mut Vec<Finding>,
) {
    let stage = app
        .of_type("AWS::ApiGatewayV2::Stage")
        .find(|s| app.resource_of(s.stack, &app.props(*s)["ApiId"]) == Some(api))
        .and_then(|s| {
            app.eval(s.stack, &app.props(s)["StageName"], &|p| {
                (p == "Stage").then(|| STAGE.to_owned())
            })
        })
        .unwrap_or_else(|| "$default".to_owned());
    // The ARN API Gateway invokes with: {api}/{stage}/{METHOD}/{path} or {api}/{stage}/{route}.
    let invoked = if websocket {
        format!("{stage}/{key}")
    } else {
        let (method, path) = key.split_once(' ').unwrap_or((key, ""));
        format!("{stage}/{method}{path}")
    };
    let covers = |p: Res, arn: &Value| {
        let Some(("Fn::Sub", sub)) = intrinsic(arn) else {
            return false;
        };
        let text = match sub {
            Value::String(s) => s.as_str(),
            Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or_default(),
            _ => return false,
        };
        let Some(tail) = text.rsplit(':').next() else {
            return false;
        };
        let Some((api_part, rest)) = tail.split_once('/') else {
            return false;
        };
        let names_api = app.resource_of(p.stack, arn) == Some(api) && api_part.starts_with("${");
        names_api && glob(rest, &invoked)
    };
    if !permission(app, f, "apigateway.amazonaws.com", covers) {
        out.push(Finding::new(
            Rule::Route,
            app,
            f,
            format!("no AWS::Lambda::Permission lets API Gateway invoke it for {key} (API Gateway answers 500)"),
            format!(
                "add a permission: Principal apigateway.amazonaws.com, SourceArn arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{Api}}/*/{}",
                invoked.split_once('/').map(|(_, r)| r).unwrap_or(&invoked)
            ),
        ));
    }
}

/// A queue policy on `queue` that lets EventBridge send from `rule`.
fn queue_accepts(app: &App, queue: Res, rule: Res) -> bool {
    app.of_type("AWS::SQS::QueuePolicy").any(|p| {
        let props = app.props(p);
        let on_queue = one_or_many(&props["Queues"])
            .iter()
            .any(|q| app.resource_of(p.stack, q) == Some(queue));
        on_queue
            && one_or_many(&props["PolicyDocument"]["Statement"])
                .iter()
                .any(|st| {
                    st["Effect"] == "Allow"
                        && st["Principal"]["Service"] == "events.amazonaws.com"
                        && one_or_many(&st["Action"])
                            .iter()
                            .any(|a| *a == "sqs:SendMessage")
                        && st["Condition"]
                            .as_object()
                            .into_iter()
                            .flat_map(|c| c.values())
                            .any(|c| app.resource_of(p.stack, c) == Some(rule))
                })
    })
}

fn strings(v: &Value) -> Vec<String> {
    one_or_many(v)
        .into_iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Where the app's events must go: a rule for these detail-types, to this target.
struct Route<'a> {
    what: String,
    detail_types: Vec<String>,
    target: Res<'a>,
    function: bool,
}

fn event_rules(app: &App, fns: &BTreeMap<HandlerName, Res>, out: &mut Vec<Finding>) {
    let mut wanted: Vec<Route> = Vec::new();
    if let Some(queue) = app
        .resources()
        .find(|r| kind_of(app, *r) == Some(Resource::ProcessingQueue))
    {
        wanted.push(Route {
            what: "the processing queue".into(),
            detail_types: QUEUE_EVENTS.iter().map(|s| s.to_string()).collect(),
            target: queue,
            function: false,
        });
    }
    for (&handler, f) in fns {
        if let Trigger::Events { detail_types } = handler.spec().trigger {
            wanted.push(Route {
                what: handler.to_string(),
                detail_types: detail_types.iter().map(|s| s.to_string()).collect(),
                target: *f,
                function: true,
            });
        }
    }
    let mut routed = vec![false; wanted.len()];
    for rule in app.of_type("AWS::Events::Rule") {
        let props = app.props(rule);
        let bus = app.resource_of(rule.stack, &props["EventBusName"]);
        if bus.is_none_or(|b| kind_of(app, b) != Some(Resource::EventBus)) {
            out.push(Finding::new(
                Rule::EventRule,
                app,
                rule,
                "EventBusName is not the notes event bus (the rule would watch the default bus)".into(),
                "set EventBusName to the bus (!ImportValue ${Stage}-EventBusName, or !GetAtt EventBus.Name)",
            ));
        }
        let pattern = &props["EventPattern"];
        let mut types = strings(&pattern["detail-type"]);
        types.sort();
        if strings(&pattern["source"]) != [EVENT_SOURCE] {
            out.push(Finding::new(
                Rule::EventRule,
                app,
                rule,
                format!("does not match source {EVENT_SOURCE} alone"),
                format!("set EventPattern.source: [{EVENT_SOURCE}]"),
            ));
        }
        for target in one_or_many(&props["Targets"]) {
            let to = app.resource_of(rule.stack, &target["Arn"]);
            let Some(i) = wanted.iter().position(|w| Some(w.target) == to) else {
                out.push(Finding::new(
                    Rule::EventRule,
                    app,
                    rule,
                    format!(
                        "targets {}, which no handler declares as its trigger",
                        to.map(|r| r.id).unwrap_or("an unknown resource")
                    ),
                    "point the target at the function or queue the events are for, or remove it",
                ));
                continue;
            };
            routed[i] = true;
            let w = &wanted[i];
            let mut want_types = w.detail_types.clone();
            want_types.sort();
            if types != want_types {
                out.push(Finding::new(
                    Rule::EventRule,
                    app,
                    rule,
                    format!("sends {types:?} to {}, which takes {want_types:?}", w.what),
                    format!("set EventPattern.detail-type to {want_types:?}"),
                ));
            }
            let dlq = app
                .resource_of(rule.stack, &target["DeadLetterConfig"]["Arn"])
                .filter(|q| app.ty(*q) == "AWS::SQS::Queue");
            match dlq {
                None => out.push(Finding::new(
                    Rule::EventRule,
                    app,
                    rule,
                    format!("its target {} has no dead-letter queue: events it cannot deliver are dropped", w.what),
                    "add DeadLetterConfig.Arn: a queue of this stack (and a queue policy letting this rule send to it)",
                )),
                Some(q) if !queue_accepts(app, q, rule) => out.push(Finding::new(
                    Rule::EventRule,
                    app,
                    rule,
                    format!("its dead-letter queue {} does not accept messages from this rule", q.id),
                    format!("add an AWS::SQS::QueuePolicy on {}: events.amazonaws.com may sqs:SendMessage when aws:SourceArn is this rule", q.id),
                )),
                Some(_) => {}
            }
            let allowed = if w.function {
                permission(app, w.target, "events.amazonaws.com", |p, arn| {
                    app.resource_of(p.stack, arn) == Some(rule)
                })
            } else {
                queue_accepts(app, w.target, rule)
            };
            if !allowed {
                out.push(Finding::new(
                    Rule::EventRule,
                    app,
                    rule,
                    format!("may not deliver to {}: no permission for this rule", w.what),
                    if w.function {
                        "add an AWS::Lambda::Permission: Principal events.amazonaws.com, SourceArn !GetAtt <Rule>.Arn".to_owned()
                    } else {
                        "add a queue policy: events.amazonaws.com may sqs:SendMessage when aws:SourceArn is this rule".to_owned()
                    },
                ));
            }
        }
    }
    for (w, done) in wanted.iter().zip(routed) {
        if !done {
            out.push(Finding::new(
                Rule::EventRule,
                app,
                w.target,
                format!(
                    "no EventBridge rule sends {:?} to {}",
                    w.detail_types, w.what
                ),
                "add an AWS::Events::Rule on the notes bus with that detail-type and this target",
            ));
        }
    }
}

fn queue_mapping(app: &App, fns: &BTreeMap<HandlerName, Res>, out: &mut Vec<Finding>) {
    for (&handler, f) in fns {
        if handler.spec().trigger != Trigger::ProcessingQueue {
            continue;
        }
        let mapping = app.of_type("AWS::Lambda::EventSourceMapping").find(|m| {
            let props = app.props(*m);
            app.resource_of(m.stack, &props["FunctionName"]) == Some(*f)
                && app
                    .resource_of(m.stack, &props["EventSourceArn"])
                    .is_some_and(|q| kind_of(app, q) == Some(Resource::ProcessingQueue))
        });
        match mapping {
            None => out.push(Finding::new(
                Rule::QueueTrigger,
                app,
                *f,
                format!("no event source mapping feeds the processing queue to {handler}"),
                "add an AWS::Lambda::EventSourceMapping from the processing queue's ARN to this function",
            )),
            Some(m) if !strings(&app.props(m)["FunctionResponseTypes"])
                .iter()
                .any(|t| t == "ReportBatchItemFailures") =>
            {
                out.push(Finding::new(
                    Rule::QueueTrigger,
                    app,
                    m,
                    "does not report batch item failures: one bad note makes the whole batch retry".into(),
                    "set FunctionResponseTypes: [ReportBatchItemFailures]",
                ))
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn arn_patterns() {
        assert!(glob("*/PUT/notes/*", "$default/PUT/notes/{noteId}"));
        assert!(glob("*/POST/notes", "$default/POST/notes"));
        assert!(!glob("*/GET/notes", "$default/GET/notes/public"));
        assert!(!glob("*/POST/auth/login", "$default/POST/auth/signup"));
        assert!(glob("*/$connect", "prod/$connect"));
        assert!(glob("*", "anything/at/all"));
    }
}
