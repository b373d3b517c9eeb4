//! The production runbook, practised on `notesctl dev`: a message that fails three times lands in the
//! local DLQ, `queue-depth --local` shows it, `redrive-dlq --local` moves it back — with the same SDK
//! code that runs against AWS.

use std::time::{Duration, Instant};

use notesctl_tests::cli::Cli;
use notesctl_tests::dev::DevServer;
use serde_json::{Value, json};

async fn sqs(dev: &DevServer) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&dev.api_url)
        .region(aws_config::Region::new("local"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "x", "x", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

async fn depth(dev: &DevServer) -> (i32, Value) {
    Cli::new()
        .args(["queue-depth", "--local", &dev.api_url])
        .json()
        .await
}

async fn wait_for_dlq(dev: &DevServer, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = depth(dev).await;
        assert_eq!(code, 0, "{v}");
        if v["dlq"]["visible"].as_u64() == Some(n) {
            return v;
        }
        assert!(Instant::now() < deadline, "the DLQ never held {n}: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn note_created(note_id: &str, username: &str) -> String {
    json!({"version": "0", "id": "x", "detail-type": "note-created", "source": "notes.service",
           "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "local", "resources": [],
           "detail": {"eventType": "note-created", "noteId": note_id, "username": username,
                      "content": "rescued from the DLQ", "isPublic": false, "timestamp": "2026-01-01T00:00:00.000Z"}})
    .to_string()
}

#[tokio::test]
async fn a_failing_message_lands_in_the_dlq_and_is_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    let sqs = sqs(&dev).await;
    let queue = sqs
        .get_queue_url()
        .queue_name("production-note-processing-queue")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq = sqs
        .get_queue_url()
        .queue_name("production-note-processing-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    // A poison message: save fails on it every time; after three receives it is dead-lettered.
    sqs.send_message()
        .queue_url(&queue)
        .message_body(note_created("not-a-note-id", "ada"))
        .send()
        .await
        .unwrap();
    let v = wait_for_dlq(&dev, 1).await;
    assert_eq!(
        v["queue"]["visible"].as_u64().unwrap() + v["queue"]["inFlight"].as_u64().unwrap(),
        0
    );
    let (code, v) = Cli::new()
        .args(["queue-depth", "--local", &dev.api_url, "--fail-above", "0"])
        .json()
        .await;
    assert_eq!(code, 1, "CI gate: {v}");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("production-note-processing-dlq")
    );

    let (code, v) = Cli::new()
        .args(["redrive-dlq", "--local", &dev.api_url, "--dry-run"])
        .json()
        .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["found"], 1);
    assert_eq!(v["moved"], 0);
    assert_eq!(v["sample"][0]["noteId"], "not-a-note-id");

    // A real note that had been dead-lettered: redriven, it is saved.
    let http = reqwest::Client::new();
    let creds = json!({"username": "ada", "password": "pw"});
    http.post(format!("{}/auth/signup", dev.api_url))
        .json(&creds)
        .send()
        .await
        .unwrap();
    let token = http
        .post(format!("{}/auth/login", dev.api_url))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(note_created("1767225600000-rescued", "ada"))
        .send()
        .await
        .unwrap();

    let refused = Cli::new()
        .args(["redrive-dlq", "--local", &dev.api_url])
        .run()
        .await;
    assert_eq!(
        refused.code, 2,
        "no --yes and no terminal: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--yes"));

    let (code, v) = Cli::new()
        .args(["redrive-dlq", "--local", &dev.api_url, "--yes"])
        .json()
        .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["moved"].as_u64(), v["method"].as_str()),
        (Some(2), Some("move-task"))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notes: Value = http
            .get(format!("{}/notes", dev.api_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if notes["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["noteId"] == "1767225600000-rescued")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the redriven note was never saved: {notes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The poison fails again, and the manual path moves it too.
    wait_for_dlq(&dev, 1).await;
    let (code, v) = Cli::new()
        .args(["redrive-dlq", "--local", &dev.api_url, "--yes", "--manual"])
        .json()
        .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["moved"].as_u64(), v["method"].as_str()),
        (Some(1), Some("manual"))
    );
}
