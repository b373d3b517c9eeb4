//! `notes-lambda` as Lambda runs it: real processes polling a local Runtime API, talking to moto.
//! signup → login → publish (202) → the note-created event reaches SQS through the EventBridge rule →
//! save, delivered twice in one batch with a garbage record → one stored note, one note-saved, and only
//! the garbage record in batchItemFailures.

use notesctl_tests::lambda::{LambdaProcess, RuntimeApi, http_event};
use notesctl_tests::moto::{self, Resources};
use serde_json::{Value, json};

struct Function {
    api: RuntimeApi,
    process: LambdaProcess,
}

async fn start(handler: &str, env: &[(String, String)]) -> Function {
    let api = RuntimeApi::start().await;
    let process = LambdaProcess::spawn(handler, &api, env);
    Function { api, process }
}

fn status_and_body(resp: &Value) -> (u64, Value) {
    let body = resp["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap())
        .unwrap_or(Value::Null);
    (resp["statusCode"].as_u64().unwrap(), body)
}

#[tokio::test]
async fn signup_login_publish_save_through_real_processes() {
    let moto = moto::shared().await;
    let sdk = moto.sdk_config().await;
    let res = Resources::create(&sdk).await;
    let results_queue = moto::observe(&sdk, &res, &["note-saved", "note-failed"]).await;
    let env = res.handler_env(moto);

    let signup = start("auth-signup", &env).await;
    let login = start("auth-login", &env).await;
    let publish = start("notes-publish", &env).await;
    let save = start("notes-save", &env).await;

    let creds = json!({"username": "ada", "password": "correct horse battery"});
    let resp = signup
        .api
        .invoke(http_event(
            "POST",
            "/auth/signup",
            Some(creds.clone()),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        status_and_body(&resp),
        (
            201,
            json!({"message": "User created successfully", "username": "ada"})
        )
    );
    assert_eq!(
        resp["headers"]["access-control-allow-origin"],
        "https://notes.example.com"
    );

    let resp = login
        .api
        .invoke(http_event("POST", "/auth/login", Some(creds), None))
        .await
        .unwrap();
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    let resp = publish
        .api
        .invoke(http_event(
            "POST",
            "/notes",
            Some(json!({"content": "event-driven", "isPublic": true})),
            Some(&token),
        ))
        .await
        .unwrap();
    let (status, body) = status_and_body(&resp);
    assert_eq!(status, 202, "{body}");
    let note_id = body["noteId"].as_str().unwrap().to_owned();

    let messages = res.receive(&sdk, 1).await;
    assert_eq!(
        messages.len(),
        1,
        "note-created reached the queue through the rule"
    );
    let body = messages[0].body().unwrap().to_owned();
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(envelope["source"], "notes.service");
    assert_eq!(envelope["detail-type"], "note-created");
    assert_eq!(envelope["detail"]["noteId"], note_id.as_str());

    let record = |id: &str, body: &str| {
        json!({"messageId": id, "receiptHandle": "rh", "body": body,
               "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1710253330123"},
               "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"})
    };
    let batch = json!({"Records": [record("first", &body), record("garbage", "}}not json{{"), record("second", &body)]});
    let resp = save.api.invoke(batch).await.unwrap();
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": "garbage"}]})
    );

    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    // The feed copy is in the note's shard (PUBLIC_FEED_SHARDS unset: 8).
    use notes_handlers::domain::feed::{Partition, ShardCount, shard_of};
    let id = notes_handlers::domain::note::NoteId::parse(&note_id).unwrap();
    let shard = Partition::Shard(shard_of(&id, ShardCount::default())).pk();
    for pk in ["USER#ada", shard.as_str()] {
        let items = ddb
            .query()
            .table_name(&res.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :n)")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
            )
            .expression_attribute_values(
                ":n",
                aws_sdk_dynamodb::types::AttributeValue::S("NOTE#".into()),
            )
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        assert_eq!(items.len(), 1, "one item under {pk}");
        assert_eq!(items[0]["noteId"].as_s().unwrap(), &note_id);
    }
    let results = moto::drain_observed(&sdk, &results_queue, 1).await;
    let saved: Vec<_> = results
        .iter()
        .filter(|e| e["detail-type"] == "note-saved")
        .collect();
    assert_eq!(saved.len(), 1, "one note-saved: {results:?}");
    assert_eq!(saved[0]["detail"]["noteId"], note_id.as_str());
    assert_eq!(saved[0]["detail"]["isPublic"], true);

    // Each function reports its own metrics as CloudWatch Embedded Metric Format lines, in the
    // NotesApp namespace with the stage its name carries (here `local`).
    let emf_of = |lines: &[Value], name: &str| -> Option<Value> {
        lines
            .iter()
            .find(|l| l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == name)
            .cloned()
    };
    for (f, want) in [
        (signup, None),
        (login, None),
        (publish, Some("NotesPublished")),
        (save, Some("NotesSaved")),
    ] {
        let logs = f.process.stop().await;
        assert!(
            !logs.contains("correct horse"),
            "a password was logged:\n{logs}"
        );
        assert!(!logs.contains(&token), "a token was logged");
        assert!(!logs.contains("moto-jwt-secret"), "the secret was logged");
        let lines: Vec<Value> = logs
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("log line is not JSON: {line}: {e}"))
            })
            .collect();
        assert!(!lines.is_empty(), "the function logged nothing");
        // One `init` line per container says where its cold start went.
        let init: Vec<&Value> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "init")
            .collect();
        assert_eq!(init.len(), 1, "one init line:\n{logs}");
        for field in ["main_at_us", "logs_us", "env_us", "secret_us"] {
            assert!(init[0]["fields"][field].is_u64(), "{field}: {}", init[0]);
        }
        assert!(
            lines
                .iter()
                .any(|l| l.to_string().contains("requestId") && l["level"].is_string()),
            "no log line carries the request id:\n{logs}"
        );
        if let Some(name) = want {
            let emf = emf_of(&lines, name).unwrap_or_else(|| panic!("no {name} metric:\n{logs}"));
            assert_eq!(emf[name], 1.0, "{emf}");
            assert_eq!(emf["Stage"], "local", "{emf}");
            assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "NotesApp");
            assert!(emf["_aws"]["Timestamp"].is_i64(), "{emf}");
        }
        if want == Some("NotesSaved") {
            let latency = emf_of(&lines, "SaveLatency").expect("the save's latency");
            assert!(latency["SaveLatency"].as_f64().unwrap() >= 0.0, "{latency}");
        }
    }
}

/// How a process that should fail at init ended (within 20 s).
async fn exit_of(process: LambdaProcess) -> std::process::Output {
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        process.child.wait_with_output(),
    )
    .await
    .expect("exits promptly")
    .unwrap()
}

#[tokio::test]
async fn unknown_handler_fails_at_init_with_a_clear_message() {
    let api = RuntimeApi::start().await;
    let process = LambdaProcess::spawn("notes-explode", &api, &[]);
    let out = exit_of(process).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes-explode") && stderr.contains("auth-signup"),
        "{stderr}"
    );
}

#[tokio::test]
async fn missing_configuration_fails_at_init_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let process = LambdaProcess::spawn("notes-save", &api, &[("TABLE_NAME".into(), "t".into())]);
    let out = exit_of(process).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("EVENT_BUS_NAME"), "{stderr}");
}

#[tokio::test]
async fn an_unusable_setting_fails_at_init_naming_the_variable() {
    let api = RuntimeApi::start().await;
    let save = [("TABLE_NAME", "t"), ("EVENT_BUS_NAME", "b")];
    let notify = [
        ("CONNECTIONS_TABLE_NAME", "c"),
        ("WEBSOCKET_API_ENDPOINT", "https://ws.example.com"),
    ];
    for (handler, base, name, value) in [
        ("notes-save", &save, "MAX_RECEIVE_COUNT", "three"),
        ("notes-save", &save, "PUBLIC_FEED_SHARDS", "0"),
        ("websocket-notify", &notify, "NOTIFY_CONCURRENCY", "0"),
        ("websocket-notify", &notify, "NOTIFY_CONCURRENCY", "5000"),
    ] {
        let mut env: Vec<(String, String)> = base
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.push((name.into(), value.into()));
        let process = LambdaProcess::spawn(handler, &api, &env);
        let out = exit_of(process).await;
        assert!(
            !out.status.success(),
            "an unusable {name} is not silently its default"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains(&format!("\"{value}\"")),
            "{stderr}"
        );
    }
}
