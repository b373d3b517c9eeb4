//! `notesctl dev` against callers it should not serve: other host names (DNS rebinding), runbook API
//! calls without this run's token, and SQS parameters outside SQS's limits. And what it leaves on
//! disk: a data directory and files only their owner can read.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use notesctl_tests::dev::DevServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sqs(dev: &DevServer, secret: &str) -> aws_sdk_sqs::Client {
    dev.sqs(secret).await
}

/// One raw HTTP/1.1 request with the given `Host`; the status code and the body.
async fn raw(dev: &DevServer, method: &str, path: &str, host: &str) -> (u16, String) {
    let addr = dev.api_url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

#[tokio::test]
async fn other_host_names_are_refused_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--allowed-host", "notes.test"]).await;
    let port = dev.api_url.rsplit(':').next().unwrap().to_owned();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/config.json"),
        ("GET", "/ws"),
        ("GET", "/notes/public"),
        ("POST", "/auth/signup"),
        ("POST", "/"),
    ] {
        let (code, body) = raw(&dev, method, path, &format!("rebind.example:{port}")).await;
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(
            body.contains("--allowed-host rebind.example"),
            "{method} {path}: says how to allow it: {body}"
        );
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("notes.test:{port}"),
    ] {
        let (code, body) = raw(&dev, "GET", "/config.json", &host).await;
        assert_eq!(code, 200, "{host}: {body}");
        assert!(
            body.contains(&format!("http://{host}")),
            "config.json names the host the browser used: {body}"
        );
    }
}

#[tokio::test]
async fn the_runbook_api_answers_only_this_runs_token() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let token = dev.runbook_token();
    let queue_url = format!(
        "{}/000000000000/production-note-processing-queue",
        dev.api_url
    );

    // What any local process or page could do before: forge a note-created for another user.
    let forged = r#"{"detail-type":"note-created","detail":{"noteId":"x","username":"bob","content":"forged","isPublic":true}}"#;
    for secret in ["x", "local", &token[..token.len() - 1]] {
        let err = sqs(&dev, secret)
            .await
            .send_message()
            .queue_url(&queue_url)
            .message_body(forged)
            .send()
            .await
            .expect_err("a wrong secret is refused");
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
        assert!(
            err.message().unwrap_or_default().contains("runbook-token"),
            "{err:?}"
        );
    }
    // A request with no signature at all.
    let unsigned = reqwest::Client::new()
        .post(&dev.api_url)
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .body(format!(r#"{{"QueueUrl":"{queue_url}","MessageBody":"x"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    // Logs too: they hold usernames.
    let logs = reqwest::Client::new()
        .post(&dev.api_url)
        .header("x-amz-target", "Logs_20140328.FilterLogEvents")
        .header("content-type", "application/x-amz-json-1.1")
        .body(r#"{"logGroupName":"/aws/lambda/production-auth-signup"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), 403);

    let depth = sqs(&dev, "x")
        .await
        .get_queue_attributes()
        .queue_url(&queue_url)
        .send()
        .await;
    assert!(depth.is_err());
    let right = sqs(&dev, &token).await;
    right
        .get_queue_attributes()
        .queue_url(&queue_url)
        .send()
        .await
        .expect("the token opens it");

    // The token is new on every start and private to its owner.
    let path = dir.path().join("runbook-token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("."), 0o700, "the data directory");
    for file in ["store.redb", "queue.redb", "jwt-secret"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    dev.terminate().await;
    let again = DevServer::start(dir.path(), &[]).await;
    assert_ne!(again.runbook_token(), token, "a fresh token per run");
    again.terminate().await;
}

#[tokio::test]
async fn sqs_parameters_are_held_to_sqs_limits() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let q = sqs(&dev, &dev.runbook_token()).await;
    let url = format!(
        "{}/000000000000/production-note-processing-queue",
        dev.api_url
    );
    let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or_default().to_owned();

    let hide = q
        .receive_message()
        .queue_url(&url)
        .visibility_timeout(1_000_000_000)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&hide), "InvalidParameterValue", "{hide:?}");
    let wait = q
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(21)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&wait), "InvalidParameterValue");
    let many = q
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(11)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&many), "InvalidParameterValue");
    let delay = q
        .send_message()
        .queue_url(&url)
        .message_body("x")
        .delay_seconds(901)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&delay), "InvalidParameterValue");
    let big = q
        .send_message()
        .queue_url(&url)
        .message_body("x".repeat(256 * 1024 + 1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&big), "InvalidParameterValue");
    let empty = q
        .send_message()
        .queue_url(&url)
        .message_body("")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&empty), "MissingParameter");
    let entries: Vec<_> = (0..11)
        .map(|i| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body("x")
                .build()
                .unwrap()
        })
        .collect();
    let batch = q
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap_err();
    assert!(
        code(&batch).ends_with("TooManyEntriesInBatchRequest"),
        "{batch:?}"
    );

    // Within the limits: a delayed message is counted as delayed, then delivered.
    q.send_message()
        .queue_url(&url)
        .message_body("later")
        .delay_seconds(1)
        .send()
        .await
        .unwrap();
    let attrs = q
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let delayed = attrs
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        })
        .cloned();
    assert_eq!(delayed.as_deref(), Some("1"));
    // Nothing was stored by the refused calls: only the delayed message is there.
    let visible = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .cloned();
    assert_eq!(visible.as_deref(), Some("0"));
}

#[tokio::test]
async fn binding_beyond_loopback_says_what_becomes_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(notesctl_tests::dev::notesctl_binary())
        .args(["dev", "--port", "0", "--host", "0.0.0.0", "--data-dir"])
        .arg(dir.path())
        .env("NOTESCTL_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let warned = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "dev ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if text.contains("not only on this machine") {
                return text.into_owned();
            }
        }
    })
    .await
    .expect("a warning within 30 s");
    assert!(warned.contains("sign up"), "{warned}");
    assert!(warned.contains("--host 127.0.0.1"), "{warned}");
    let _ = child.kill().await;
}
