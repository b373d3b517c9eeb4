//! The CloudFormation templates, parsed and held to what real AWS needs: least-privilege IAM, the
//! visibility-timeout rule (required fix 9), encryption, retention, TTL, throttling and outputs.

use std::collections::BTreeSet;

use serde_json::Value;

const STACKS: [&str; 6] = ["event", "data", "auth", "websocket", "notes", "frontend"];

fn template(name: &str) -> Value {
    let path = notesctl_tests::workspace_root().join(format!("templates/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    notesctl::template::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn resources<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str(), &r["Properties"]))
        .collect()
}

fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a Value)) {
    f(v);
    match v {
        Value::Object(m) => m.values().for_each(|x| walk(x, f)),
        Value::Array(s) => s.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// The strings in a value, through intrinsic functions: `!Sub "${Stage}-x"` and `!Ref X` give theirs.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(s) => s.iter().flat_map(strings).collect(),
        Value::Object(m) if m.len() == 1 => match notesctl::template::intrinsic(v) {
            Some((_, arg)) => strings(arg),
            None => vec![],
        },
        _ => vec![],
    }
}

#[test]
fn no_iam_action_has_a_wildcard_and_only_x_ray_writes_are_on_every_resource() {
    for name in STACKS {
        let t = template(name);
        walk(&t, &mut |v| {
            if let Value::Object(m) = v {
                if let Some(action) = m.get("Action") {
                    for a in strings(action) {
                        assert!(!a.contains('*'), "{name}: action {a}");
                    }
                }
                // X-Ray's writes have no resource-level permissions: on * is their only form.
                let xray_only = m.get("Action").is_some_and(|a| {
                    strings(a).iter().all(|a| {
                        ["xray:PutTraceSegments", "xray:PutTelemetryRecords"].contains(&a.as_str())
                    })
                });
                if m.get("Effect").is_some() && !xray_only {
                    for r in strings(m.get("Resource").unwrap_or(&Value::Null)) {
                        assert_ne!(r, "*", "{name}: a statement on every resource");
                    }
                }
            }
        });
    }
}

#[test]
fn every_function_is_the_one_binary_with_a_seven_day_log_group() {
    let handlers: BTreeSet<&str> = notes_handlers::HandlerName::ALL
        .iter()
        .map(|h| h.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for name in STACKS {
        let t = template(name);
        let log_groups: Vec<String> = resources(&t, "AWS::Logs::LogGroup")
            .iter()
            .inspect(|(id, p)| assert_eq!(p["RetentionInDays"].as_u64(), Some(7), "{name}/{id}"))
            .flat_map(|(_, p)| strings(&p["LogGroupName"]))
            .collect();
        for (id, f) in resources(&t, "AWS::Lambda::Function") {
            assert_eq!(
                f["Runtime"].as_str(),
                Some("provided.al2023"),
                "{name}/{id}"
            );
            let handler = f["Handler"].as_str().unwrap();
            assert!(handlers.contains(handler), "{name}/{id}: handler {handler}");
            seen.insert(handler.to_owned());
            let fname = strings(&f["FunctionName"]).join("");
            assert_eq!(
                fname,
                format!("${{Stage}}-{handler}"),
                "{name}/{id}: the naming convention"
            );
            assert!(
                log_groups.contains(&format!("/aws/lambda/{fname}")),
                "{name}/{id}: no log group {fname}"
            );
        }
    }
    assert_eq!(seen.len(), 12, "every handler deployed once: {seen:?}");
}

/// Required fix 9: the visibility timeout is at least six times save-note's timeout (the original set
/// both to 30 s).
#[test]
fn fix9_visibility_timeout_is_six_times_saves_timeout() {
    let event = template("event");
    let notes = template("notes");
    let allowed = |t: &Value| -> Vec<u64> {
        t["Parameters"]["SaveFunctionTimeout"]["AllowedValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        allowed(&event),
        allowed(&notes),
        "both stacks accept the same save timeouts"
    );
    let mapping = event["Mappings"]["SaveTimeoutToVisibility"]
        .as_object()
        .unwrap();
    for timeout in allowed(&event) {
        let vis = mapping[&timeout.to_string()]["VisibilityTimeout"]
            .as_u64()
            .unwrap();
        assert!(vis >= 6 * timeout, "timeout {timeout} → visibility {vis}");
        assert!(vis <= 43_200, "SQS's maximum");
    }
    let queue = resources(&event, "AWS::SQS::Queue")
        .into_iter()
        .find(|(_, q)| {
            strings(&q["QueueName"])
                .join("")
                .ends_with("note-processing-queue")
        })
        .expect("the processing queue")
        .1;
    let vis = &queue["VisibilityTimeout"];
    assert!(
        vis.get("Fn::FindInMap").is_some(),
        "derived from the save timeout: {vis:?}"
    );
    let save = resources(&notes, "AWS::Lambda::Function")
        .into_iter()
        .find(|(_, f)| f["Handler"].as_str() == Some("notes-save"))
        .unwrap()
        .1;
    assert_eq!(strings(&save["Timeout"]), vec!["SaveFunctionTimeout"]);
}

#[test]
fn queues_are_encrypted_and_the_dlq_outlives_the_queue() {
    let event = template("event");
    let queues = resources(&event, "AWS::SQS::Queue");
    let find = |suffix: &str| {
        queues
            .iter()
            .find(|(_, q)| strings(&q["QueueName"]).join("").ends_with(suffix))
            .unwrap()
            .1
    };
    let (queue, dlq) = (find("note-processing-queue"), find("note-processing-dlq"));
    for q in [queue, dlq] {
        assert_eq!(q["SqsManagedSseEnabled"].as_bool(), Some(true));
    }
    assert_eq!(dlq["MessageRetentionPeriod"].as_u64(), Some(14 * 24 * 3600));
    assert!(
        queue["MessageRetentionPeriod"].as_u64().unwrap()
            < dlq["MessageRetentionPeriod"].as_u64().unwrap()
    );
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64(), Some(3));
    assert_eq!(
        resources(&event, "AWS::Events::Archive").len(),
        1,
        "an archive on the bus"
    );
    let notes = template("notes");
    let (_, esm) = resources(&notes, "AWS::Lambda::EventSourceMapping")[0];
    assert_eq!(esm["BatchSize"].as_u64(), Some(10));
    assert_eq!(
        strings(&esm["FunctionResponseTypes"]),
        vec!["ReportBatchItemFailures"]
    );
}

#[test]
fn secret_ttl_throttling_and_frontend_privacy() {
    let auth = template("auth");
    let (_, secret) = resources(&auth, "AWS::SecretsManager::Secret")[0];
    assert!(
        secret["GenerateSecretString"]["PasswordLength"]
            .as_u64()
            .unwrap()
            >= 32,
        "generated at deploy time, ≥ 32 bytes"
    );
    assert!(
        secret.get("SecretString").is_none(),
        "never a committed value"
    );
    let (_, stage) = resources(&auth, "AWS::ApiGatewayV2::Stage")[0];
    assert!(stage["DefaultRouteSettings"]["ThrottlingRateLimit"] != Value::Null);
    let ws = template("websocket");
    let tables = resources(&ws, "AWS::DynamoDB::Table");
    assert_eq!(
        tables[0].1["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("ttl")
    );
    assert_eq!(
        tables[0].1["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    let data = template("data");
    let (_, table) = resources(&data, "AWS::DynamoDB::Table")[0];
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("ttl"),
        "tombstones expire"
    );
    let frontend = template("frontend");
    let (_, bucket) = resources(&frontend, "AWS::S3::Bucket")[0];
    let block = &bucket["PublicAccessBlockConfiguration"];
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[k].as_bool(), Some(true), "{k}");
    }
    assert_eq!(
        resources(&frontend, "AWS::CloudFront::OriginAccessControl").len(),
        1
    );
}

#[test]
fn outputs_users_and_the_cli_rely_on() {
    let outputs = |name: &str| -> BTreeSet<String> {
        template(name)["Outputs"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for (stack, keys) in [
        ("auth", vec!["ApiUrl"]),
        ("websocket", vec!["WebSocketUrl"]),
        ("event", vec!["ProcessingQueueUrl", "DeadLetterQueueUrl"]),
        (
            "frontend",
            vec!["BucketName", "DistributionId", "DistributionDomainName"],
        ),
    ] {
        let have = outputs(stack);
        for k in keys {
            assert!(have.contains(k), "{stack} lacks output {k}: {have:?}");
        }
    }
}

/// A dashboard's metric line: namespace, metric name, dimensions.
type MetricLine = (String, String, Vec<(String, String)>);

/// `!Sub "…${Stage}…"` with the stage and Region filled in.
fn sub_name(v: &Value) -> String {
    strings(v)
        .first()
        .cloned()
        .unwrap_or_default()
        .replace("${Stage}", "prod")
        .replace("${AWS::Region}", "eu-west-1")
}

#[test]
fn the_dashboard_watches_every_function_queue_rule_and_app_metric_by_their_real_names() {
    let notes = template("notes");
    let dashboards = resources(&notes, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard per stage");
    let (_, props) = dashboards[0];
    assert_eq!(sub_name(&props["DashboardName"]), "prod-notes");
    let (body, vars) = match notesctl::template::intrinsic(&props["DashboardBody"]) {
        Some(("Fn::Sub", Value::Array(parts))) => (parts[0].as_str().unwrap(), &parts[1]),
        other => panic!("DashboardBody is a !Sub with variables: {other:?}"),
    };
    assert!(vars["WebSocketApiId"].is_object(), "the API id is imported");
    let body = body
        .replace("${Stage}", "prod")
        .replace("${AWS::Region}", "eu-west-1")
        .replace("${WebSocketApiId}", "abc123");
    assert!(!body.contains("${"), "every variable is known: {body}");
    let body: Value = serde_json::from_str(&body).expect("the body is JSON");
    // Each metric line: namespace, name, then dimension name/value pairs (an options object last).
    let mut lines: Vec<MetricLine> = Vec::new();
    for widget in body["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let parts: Vec<&str> = line
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let dims = parts[2..]
                .chunks(2)
                .map(|p| (p[0].to_owned(), p[1].to_owned()))
                .collect();
            lines.push((parts[0].to_owned(), parts[1].to_owned(), dims));
        }
    }
    let has = |ns: &str, metric: &str, dim: &str, value: &str| {
        lines.iter().any(|(n, m, d)| {
            n == ns && m == metric && d.iter().any(|(k, v)| k == dim && v == value)
        })
    };
    for h in notes_handlers::HandlerName::ALL {
        let name = format!("prod-{h}");
        for metric in ["Invocations", "Errors", "Throttles", "Duration"] {
            assert!(
                has("AWS/Lambda", metric, "FunctionName", &name),
                "{metric} of {name}"
            );
        }
    }
    let event = template("event");
    for (_, q) in resources(&event, "AWS::SQS::Queue") {
        let name = sub_name(&q["QueueName"]);
        for metric in [
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
        ] {
            assert!(
                has("AWS/SQS", metric, "QueueName", &name),
                "{metric} of {name}"
            );
        }
    }
    // Every dead-letter queue of the websocket stack (the notify DLQ) shows what waits in it.
    for (_, q) in resources(&template("websocket"), "AWS::SQS::Queue") {
        let name = sub_name(&q["QueueName"]);
        assert!(
            has(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                &name
            ),
            "ApproximateNumberOfMessagesVisible of {name}"
        );
    }
    for metric in [
        "NumberOfMessagesSent",
        "NumberOfMessagesReceived",
        "NumberOfMessagesDeleted",
    ] {
        for queue in ["prod-note-processing-queue", "prod-note-processing-dlq"] {
            assert!(
                has("AWS/SQS", metric, "QueueName", queue),
                "{metric} of {queue}"
            );
        }
    }
    let mut rules = 0;
    for name in STACKS {
        for (_, r) in resources(&template(name), "AWS::Events::Rule") {
            let rule = sub_name(&r["Name"]);
            rules += 1;
            for metric in ["MatchedEvents", "FailedInvocations"] {
                assert!(
                    has("AWS/Events", metric, "RuleName", &rule),
                    "{metric} of {rule}"
                );
            }
        }
    }
    assert_eq!(rules, 2);
    for metric in ["MessageCount", "ConnectCount"] {
        assert!(has("AWS/ApiGateway", metric, "ApiId", "abc123"), "{metric}");
    }
    for metric in [
        "NotesPublished",
        "NotesSaved",
        "NotesFailed",
        "SaveLatency",
        "ConnectionsReached",
        "StaleConnectionsRemoved",
    ] {
        assert!(has("NotesApp", metric, "Stage", "prod"), "{metric}");
    }
    assert!(
        notes["Outputs"]["DashboardUrl"].is_object(),
        "notesctl outputs prints the dashboard's URL"
    );
}
