//! `notesctl doctor --local` against a real `notesctl dev`: all ✓ on a healthy app, and ✗ with the
//! right evidence and next step when the queue worker is stopped (`--hold-queue`), when a poison
//! message sits in the DLQ, and when the JWT secret changed under live connections.

use std::time::{Duration, Instant};

use notesctl::commands::doctor::{Check, DoctorReport, Verdict};
use notesctl_tests::dev::DevServer;
use serde_json::json;

async fn doctor(dev: &DevServer) -> (i32, DoctorReport) {
    dev.cli()
        .args(["doctor", "--local", &dev.api_url])
        .json::<DoctorReport>()
        .await
}

fn find<'a>(report: &'a DoctorReport, name: &str) -> &'a Check {
    report
        .runbooks
        .iter()
        .flat_map(|r| &r.checks)
        .find(|c| c.name.contains(name))
        .unwrap_or_else(|| panic!("no check {name:?}: {report:#?}"))
}

#[tokio::test]
async fn a_healthy_app_passes_every_check_it_can_tell() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let token = dev.sign_up("ada", "correct horse battery").await;
    dev.post_note(&token, json!({"content": "hello", "isPublic": true}))
        .await;
    // The old fixed name, taken by someone else, is not the doctor's any more.
    dev.sign_up("notesctl-doctor", "the squatter's password")
        .await;
    let (code, report) = doctor(&dev).await;
    assert_eq!(code, 0, "{report:#?}");
    let own = notesctl::names::check_user("doctor", "dev", &dev.runbook_token());
    assert_eq!(
        find(&report, "a connect with a fresh token").evidence,
        format!("connected as {own}")
    );
    let names: Vec<&str> = report.runbooks.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Notes not saving",
            "WebSocket not connecting",
            "Real-time updates not working"
        ]
    );
    for c in report.runbooks.iter().flat_map(|r| &r.checks) {
        assert_ne!(c.verdict, Verdict::Fail, "{c:#?}");
    }
    for name in [
        "note-created events reach the queue",
        "not backing up",
        "no dead letters",
        "a connect with a fresh token",
        "a note reaches its author's socket",
        "the connection is in the registry",
        "notify runs without errors",
    ] {
        assert_eq!(find(&report, name).verdict, Verdict::Pass, "{report:#?}");
    }
    // The text: a mark per check, and the tally.
    let run = dev
        .cli()
        .args(["doctor", "--local", &dev.api_url])
        .run()
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("✓ a note reaches its author's socket"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("no check failed\n"), "{}", run.stdout);
}

#[tokio::test]
async fn a_stopped_queue_worker_is_named_with_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--hold-queue"]).await;
    let token = dev.sign_up("ada", "correct horse battery").await;
    for i in 0..3 {
        dev.post_note(&token, json!({"content": format!("held {i}")}))
            .await;
    }
    let (code, report) = doctor(&dev).await;
    assert_eq!(code, 1, "{report:#?}");
    let queue = find(&report, "not backing up");
    assert_eq!(queue.verdict, Verdict::Fail, "{queue:#?}");
    assert!(queue.evidence.contains("visible"), "{queue:#?}");
    assert!(
        queue.next.as_deref().unwrap().contains("--hold-queue"),
        "{queue:#?}"
    );
    let probe = find(&report, "a note reaches its author's socket");
    assert_eq!(probe.verdict, Verdict::Fail, "{probe:#?}");
    assert!(probe.evidence.contains("no note-saved within 10 s"));
}

#[tokio::test]
async fn a_poison_message_in_the_dlq_is_shown_with_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &["--visibility-timeout", "1"]).await;
    let sqs = dev.sqs(&dev.runbook_token()).await;
    let queue = sqs
        .get_queue_url()
        .queue_name("dev-note-processing-queue")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let poison = json!({"detail-type": "note-created", "source": "notes.service",
        "detail": {"eventType": "note-created", "noteId": "not-a-note-id", "username": "ada",
                   "content": "x", "isPublic": false, "timestamp": "2026-01-01T00:00:00.000Z"}});
    sqs.send_message()
        .queue_url(&queue)
        .message_body(poison.to_string())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev
        .counters()
        .await
        .get("metric.NotesFailed.unreadable")
        .calls
        == 0
    {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, report) = doctor(&dev).await;
    assert_eq!(code, 1, "{report:#?}");
    let dlq = find(&report, "no dead letters");
    assert_eq!(dlq.verdict, Verdict::Fail, "{dlq:#?}");
    assert!(dlq.evidence.contains("holds 1"), "{dlq:#?}");
    assert!(
        dlq.evidence.contains("not-a-note-id"),
        "the sample: {dlq:#?}"
    );
    assert!(dlq.next.as_deref().unwrap().contains("redrive-dlq"));
    let logs = find(&report, "notes-save's logs");
    assert_eq!(logs.verdict, Verdict::Fail, "{logs:#?}");
    assert_eq!(
        find(&report, "a note reaches its author's socket").verdict,
        Verdict::Pass,
        "the app still saves notes"
    );
}

#[tokio::test]
async fn a_jwt_secret_changed_under_live_connections_shows_in_connect() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    let token = dev.sign_up("ada", "correct horse battery").await;
    let ws = dev.ws_url.clone();
    dev.interrupt().await;
    std::fs::write(
        dir.path().join("jwt-secret"),
        "a-new-secret-of-more-than-thirty-two-bytes-0123456789",
    )
    .unwrap();
    let dev = DevServer::start(dir.path(), &[]).await;
    // A client that kept its token reconnects: refused.
    let refused = tokio_tungstenite::connect_async(format!("{}?token={token}", dev.ws_url)).await;
    assert!(refused.is_err(), "the old token is refused ({ws})");
    let (code, report) = doctor(&dev).await;
    assert_eq!(code, 1, "{report:#?}");
    let connect = find(&report, "websocket-connect's logs");
    assert_eq!(connect.verdict, Verdict::Fail, "{connect:#?}");
    assert!(
        connect.evidence.contains("refused a connection"),
        "{connect:#?}"
    );
    assert!(connect.next.as_deref().unwrap().contains("log in again"));
    assert_eq!(
        find(&report, "a connect with a fresh token").verdict,
        Verdict::Pass,
        "a fresh token works"
    );
}
