//! A function that an event rule invokes is invoked asynchronously: Lambda retries an invocation
//! that fails and then, unless told otherwise, drops the event. Each such function must have an
//! `AWS::Lambda::EventInvokeConfig` that sets its retries and the event's maximum age on purpose and
//! sends what still fails to a queue (its on-failure destination), which its role may write to.

use notes_handlers::spec::Trigger;

use super::functions::functions;
use super::model::{App, Res};
use super::{Finding, Rule};

/// Lambda's bounds: retries 0–2, event age 60 s–6 h.
const RETRIES: std::ops::RangeInclusive<i64> = 0..=2;
const EVENT_AGE: std::ops::RangeInclusive<i64> = 60..=21_600;

/// The EventInvokeConfigs of function `f`.
fn configs_of<'a>(app: &'a App, f: Res<'a>) -> impl Iterator<Item = Res<'a>> + 'a {
    app.of_type("AWS::Lambda::EventInvokeConfig")
        .filter(move |c| app.resource_of(c.stack, &app.props(*c)["FunctionName"]) == Some(f))
}

/// The queue function `f`'s failed asynchronous invocations go to, if its EventInvokeConfig names
/// one of the app's queues.
pub fn on_failure_queue<'a>(app: &'a App, f: Res<'a>) -> Option<Res<'a>> {
    configs_of(app, f).find_map(|c| {
        let destination = &app.props(c)["DestinationConfig"]["OnFailure"]["Destination"];
        app.resource_of(c.stack, destination)
            .filter(|q| app.ty(*q) == "AWS::SQS::Queue")
    })
}

pub fn check(app: &App, out: &mut Vec<Finding>) {
    for (handler, f) in functions(app) {
        if !matches!(handler.spec().trigger, Trigger::Events { .. }) {
            continue;
        }
        let configs: Vec<Res> = configs_of(app, f).collect();
        if configs.is_empty() {
            out.push(Finding::new(
                Rule::FailureDestination,
                app,
                f,
                format!("{handler} is invoked asynchronously by its event rule, and nothing catches an invocation that still fails after Lambda's retries: the event is dropped"),
                "add an AWS::Lambda::EventInvokeConfig for it (Qualifier: $LATEST) with MaximumRetryAttempts, MaximumEventAgeInSeconds and DestinationConfig.OnFailure.Destination: a dead-letter queue",
            ));
        }
        for c in configs {
            config(app, c, &handler.to_string(), out);
        }
    }
}

fn config(app: &App, c: Res, handler: &str, out: &mut Vec<Finding>) {
    let props = app.props(c);
    let mut say = |problem: String, fix: &str| {
        out.push(Finding::new(Rule::FailureDestination, app, c, problem, fix))
    };
    if props["Qualifier"] != "$LATEST" {
        say(
            format!(
                "Qualifier is {}, but the event rule invokes {handler} unqualified, so this configuration is not the one its invocations get",
                props["Qualifier"]
            ),
            "set Qualifier: $LATEST",
        );
    }
    match props["MaximumRetryAttempts"].as_i64() {
        Some(n) if RETRIES.contains(&n) => {}
        Some(n) => say(
            format!("MaximumRetryAttempts is {n}; Lambda takes 0 to 2"),
            "set MaximumRetryAttempts between 0 and 2",
        ),
        None => say(
            "MaximumRetryAttempts is not set: Lambda's default (2) is taken, not chosen".into(),
            "set MaximumRetryAttempts (0 to 2) on purpose",
        ),
    }
    match props["MaximumEventAgeInSeconds"].as_i64() {
        Some(n) if EVENT_AGE.contains(&n) => {}
        Some(n) => say(
            format!("MaximumEventAgeInSeconds is {n}; Lambda takes 60 to 21600"),
            "set MaximumEventAgeInSeconds between 60 and 21600",
        ),
        None => say(
            "MaximumEventAgeInSeconds is not set: an event may wait six hours (Lambda's default) for a notification that is stale long before".into(),
            "set MaximumEventAgeInSeconds (60 to 21600) on purpose",
        ),
    }
    let destination = &props["DestinationConfig"]["OnFailure"]["Destination"];
    if app
        .resource_of(c.stack, destination)
        .is_none_or(|q| app.ty(q) != "AWS::SQS::Queue")
    {
        say(
            format!(
                "{handler}'s failed invocations go nowhere: DestinationConfig.OnFailure.Destination is not a queue of this template"
            ),
            "set DestinationConfig.OnFailure.Destination: !GetAtt <dead-letter queue>.Arn (and grant the function's role sqs:SendMessage on it)",
        );
    }
}
