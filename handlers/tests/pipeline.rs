//! The event-driven half in-process: save from SQS batches, notify from EventBridge, WebSocket
//! connect/disconnect, with the required fixes each as a test.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use notes_handlers::HandlerName;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::note::NoteId;
use notes_handlers::ports::{Connection, ConnectionRegistry, FailReason, Metric, NoteStore};
use serde_json::json;
use support::fakes::{BrokenNotes, RecordedMetrics, Script, ScriptedNotifier, TracingBus};
use support::{App, envelope, eventbridge_event, sqs_event};

fn created(id: &str, user: &str, public: bool) -> NoteEvent {
    NoteEvent::Created {
        note_id: NoteId::parse(id).unwrap(),
        username: user.into(),
        content: format!("content of {id}"),
        is_public: public,
        timestamp: "2024-03-12T14:22:10.000Z".into(),
    }
}

/// Required fix 4: three deliveries of one note ⇒ one item per key and one note-saved; a garbage
/// record is the only failure in the batch.
#[tokio::test]
async fn fix4_save_is_idempotent_and_reports_only_bad_records() {
    let mut app = App::new();
    let ev = created("1710253330000-k3j9x2a", "ada", true);
    let batch = sqs_event(&[
        ("a", envelope(&ev), 1),
        ("garbage", "{not json".into(), 1),
        ("b", envelope(&ev), 1),
        (
            "wrong-type",
            json!({"detail": {"eventType": "note-deleted"}}).to_string(),
            1,
        ),
    ]);
    let out = app.invoke(HandlerName::NotesSave, batch).await;
    assert_eq!(
        out["batchItemFailures"],
        json!([{"itemIdentifier": "garbage"}, {"itemIdentifier": "wrong-type"}])
    );
    let again = app.save(&[("c", &ev, 2)]).await;
    assert!(again.is_empty(), "{again:?}");

    let events = app.drain_events();
    let saved: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, NoteEvent::Saved { .. }))
        .collect();
    assert_eq!(
        saved.len(),
        1,
        "one note-saved for three deliveries: {events:?}"
    );
    let page = app
        .store
        .list_user_notes(
            "ada",
            &notes_handlers::domain::cursor::PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].created_at, "2024-03-12T14:22:10.000Z");
    let public = app
        .store
        .list_public_notes(&notes_handlers::domain::feed::FeedRequest::new(None, 10))
        .await
        .unwrap();
    assert_eq!(public.items.len(), 1);
}

/// A save that fails leaves the record for redelivery; on the last delivery the author hears of it.
#[tokio::test]
async fn failing_saves_are_retried_and_announced_on_the_last_attempt() {
    let metrics = Arc::new(RecordedMetrics::default());
    let mut app = App::new().with(|d| {
        d.notes = Arc::new(BrokenNotes);
        d.metrics = metrics.clone();
    });
    let ev = created("1710253330000-k3j9x2a", "ada", false);
    let out = app.save(&[("m", &ev, 1)]).await;
    assert_eq!(out, ["m"]);
    assert!(app.drain_events().is_empty(), "not yet: SQS will redeliver");
    assert_eq!(metrics.taken(), [], "not failed until its last delivery");
    let out = app.save(&[("m", &ev, 3)]).await;
    assert_eq!(out, ["m"], "still goes to the DLQ");
    assert_eq!(metrics.taken(), [Metric::NotesFailed(FailReason::Store)]);
    match app.drain_events().as_slice() {
        [
            NoteEvent::Failed {
                note_id,
                username,
                error,
                ..
            },
        ] => {
            assert_eq!(
                (note_id.as_str(), username.as_str()),
                ("1710253330000-k3j9x2a", "ada")
            );
            assert!(!error.is_empty());
        }
        other => panic!("expected one note-failed, got {other:?}"),
    }
}

/// A note stored by a delivery whose note-saved never went out gets it on the next delivery.
#[tokio::test]
async fn a_missed_note_saved_is_sent_on_redelivery() {
    let mut app = App::new().with(|d| d.settings.announce_lease_ms = 0);
    let ev = created("1710253330000-k3j9x2a", "ada", false);
    let bus = Arc::new(support::fakes::RefusingBus::refusing(usize::MAX));
    let saved_deps_bus = app.deps.bus.clone();
    app.deps.bus = bus;
    let out = app.save(&[("m", &ev, 1)]).await;
    assert_eq!(out, ["m"]);
    app.deps.bus = saved_deps_bus;
    let out = app.save(&[("m", &ev, 2)]).await;
    assert!(out.is_empty(), "{out:?}");
    let events = app.drain_events();
    assert!(
        matches!(events.as_slice(), [NoteEvent::Saved { .. }]),
        "{events:?}"
    );
}

fn conn(id: &str, user: &str) -> Connection {
    Connection {
        connection_id: id.into(),
        username: user.into(),
        connected_at: "t".into(),
        ttl: 0,
    }
}

fn saved(user: &str, public: bool) -> NoteEvent {
    NoteEvent::Saved {
        note_id: NoteId::parse("1710253330000-k3j9x2a").unwrap(),
        username: user.into(),
        content: "hi".into(),
        is_public: public,
        saved_at: "2024-03-12T14:22:11.000Z".into(),
        timestamp: "2024-03-12T14:22:11.000Z".into(),
    }
}

async fn app_with_connections(notifier: Arc<ScriptedNotifier>) -> App {
    let app = App::new().with(|d| d.notifier = notifier);
    for (id, user) in [
        ("ada-1", "ada"),
        ("ada-2", "ada"),
        ("bob-1", "bob"),
        ("eve-1", "eve"),
    ] {
        app.store.register(&conn(id, user)).await.unwrap();
    }
    app
}

#[tokio::test]
async fn private_events_reach_only_the_owner() {
    let notifier = Arc::new(ScriptedNotifier::new(&[]));
    let app = app_with_connections(notifier.clone()).await;
    let out = app.notify(&saved("ada", false)).await;
    assert_eq!(out, json!({"delivered": 2, "gone": 0, "failed": 0}));
    assert_eq!(notifier.delivered_to(), vec!["ada-1", "ada-2"]);
    let (_, body) = notifier.delivered.lock().unwrap()[0].clone();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["eventType"], "note-saved");
    assert_eq!(body["noteId"], "1710253330000-k3j9x2a");
}

/// Required fix 5: a gone connection is removed under its own user, not the event author's; and a public event reaches everyone (fix 6 on DynamoDB: handlers/tests/aws_adapters.rs).
#[tokio::test]
async fn fix5_gone_connections_are_removed_under_their_own_user() {
    let notifier = Arc::new(ScriptedNotifier::new(&[("bob-1", Script::Gone)]));
    let metrics = Arc::new(RecordedMetrics::default());
    let app = app_with_connections(notifier.clone())
        .await
        .with(|d| d.metrics = metrics.clone());
    let out = app.notify(&saved("ada", true)).await;
    assert_eq!(out, json!({"delivered": 3, "gone": 1, "failed": 0}));
    assert_eq!(
        metrics.taken(),
        [
            Metric::ConnectionsReached(3),
            Metric::StaleConnectionsRemoved(1)
        ]
    );
    assert_eq!(notifier.delivered_to(), vec!["ada-1", "ada-2", "eve-1"]);
    assert!(
        app.store.connections_of("bob").await.unwrap().is_empty(),
        "bob's row is gone"
    );
    assert_eq!(
        app.store.connections_of("ada").await.unwrap().len(),
        2,
        "the author's rows stay"
    );
    assert_eq!(app.store.all_connections().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_throttled_connection_is_posted_to_again_within_the_invocation() {
    let notifier = Arc::new(ScriptedNotifier::new(&[(
        "ada-2",
        Script::ThrottleTimes(2),
    )]));
    let app = app_with_connections(notifier.clone()).await;
    let out = app.notify(&saved("ada", false)).await;
    assert_eq!(out, json!({"delivered": 2, "gone": 0, "failed": 0}));
    assert_eq!(notifier.delivered_to(), vec!["ada-1", "ada-2"]);
    assert_eq!(
        notifier.posts_to("ada-2"),
        3,
        "throttled twice, then delivered"
    );
    assert_eq!(notifier.posts_to("ada-1"), 1, "never posted twice");
}

#[tokio::test]
async fn only_connections_still_failing_fail_the_invocation_for_a_retry() {
    let notifier = Arc::new(ScriptedNotifier::new(&[("ada-2", Script::Throttle)]));
    let app = app_with_connections(notifier.clone()).await;
    let result = notes_handlers::dispatch::invoke_json(
        HandlerName::WebsocketNotify,
        &app.deps,
        eventbridge_event(&saved("ada", false)),
        lambda_runtime::Context::default(),
    )
    .await;
    let err = result
        .expect_err("a connection still throttled must fail the invocation")
        .to_string();
    assert!(
        err.contains("1 of 2 posts still failing after retries") && err.contains("ada-2"),
        "{err}"
    );
    let attempts = app.deps.settings.notify_attempts;
    assert_eq!(notifier.posts_to("ada-2"), attempts);
    assert_eq!(
        notifier.posts_to("ada-1"),
        1,
        "the delivered one is not posted again"
    );

    // A connection that fails for good (not in passing) is counted, not retried.
    let notifier = Arc::new(ScriptedNotifier::new(&[("ada-2", Script::Gone)]));
    let app = app_with_connections(notifier.clone()).await;
    let out = app.notify(&saved("ada", false)).await;
    assert_eq!(out["gone"], 1);
    assert_eq!(notifier.posts_to("ada-2"), 1);
}

#[tokio::test]
async fn posts_run_with_bounded_concurrency() {
    let notifier = Arc::new(ScriptedNotifier::new(&[]));
    let mut app = App::new().with(|d| d.notifier = notifier.clone());
    app.deps.settings.notify_concurrency = 4;
    for i in 0..40 {
        app.store
            .register(&conn(&format!("c{i:02}"), "ada"))
            .await
            .unwrap();
    }
    let out = app.notify(&saved("ada", false)).await;
    assert_eq!(out["delivered"], 40);
    let max = notifier.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 4, "max in flight {max}");
}

#[tokio::test]
async fn websocket_connect_verifies_the_token() {
    let app = App::new();
    let token = app.signup_and_login("ada").await;
    for (what, token) in [
        ("none", None),
        ("forged", Some("x.y.z")),
        ("empty", Some("")),
    ] {
        let r = app.ws("$connect", "c1", token).await;
        assert_eq!(r["statusCode"], 401, "{what}");
    }
    // Required fix 1 for the WebSocket: an unsigned token naming a user is refused.
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg":"none"})),
        b64(json!({"username":"ada","exp":9999999999u64}))
    );
    let r = app.ws("$connect", "c1", Some(&unsigned)).await;
    assert_eq!(r["statusCode"], 401);
    assert!(app.store.all_connections().await.unwrap().is_empty());

    let r = app.ws("$connect", "c1", Some(&token)).await;
    assert_eq!(r["statusCode"], 200);
    let rows = app.store.connections_of("ada").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].ttl > notes_handlers::domain::token::now_secs() + 7000,
        "2 h TTL"
    );

    let r = app.ws("$disconnect", "c1", None).await;
    assert_eq!(r["statusCode"], 200);
    assert!(app.store.all_connections().await.unwrap().is_empty());
    let r = app.ws("$disconnect", "unknown", None).await;
    assert_eq!(r["statusCode"], 200, "disconnecting twice is fine");
}

#[tokio::test]
async fn the_whole_flow_in_process() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let r = app.ws("$connect", "c1", Some(&token)).await;
    assert_eq!(r["statusCode"], 200);
    let mut socket = app.notifier.attach("c1");
    let r = app.post("/notes", json!({"content": "live"}), &token).await;
    assert_eq!(r.status, 202);
    let created = app.drain_events();
    app.save(&[("m", &created[0], 1)]).await;
    let saved = app.drain_events();
    assert_eq!(saved.len(), 1);
    app.notify(&saved[0]).await;
    let msg: serde_json::Value = serde_json::from_str(&socket.try_recv().unwrap()).unwrap();
    assert_eq!(msg["eventType"], "note-saved");
    assert_eq!(msg["noteId"], r.body["noteId"]);
    assert_eq!(msg["content"], "live");
}

/// A note that was stored but whose `note-saved` could not be published is not a failed note: no
/// `note-failed`, even on the last delivery; it is announced once the announcement lease runs out.
#[tokio::test]
async fn a_stored_but_unannounced_note_is_not_reported_failed() {
    let bus = Arc::new(support::fakes::RefusingBus {
        refusals: usize::MAX.into(),
        only: Some("note-saved"),
        ..Default::default()
    });
    let mut app = App::new().with(|d| {
        d.bus = bus.clone();
        d.settings.announce_lease_ms = 0;
    });
    let ev = created("1710253330000-k3j9x2a", "ada", false);
    let out = app.save(&[("m", &ev, 3)]).await;
    assert_eq!(out, ["m"], "left for redelivery");
    let attempted = bus.attempted.lock().unwrap().clone();
    assert!(
        attempted
            .iter()
            .all(|e| matches!(e, NoteEvent::Saved { .. })),
        "no note-failed for a stored note: {attempted:?}"
    );
    bus.refusals.store(0, Ordering::SeqCst);
    let out = app.save(&[("m", &ev, 4)]).await;
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        bus.accepted.lock().unwrap().len(),
        1,
        "announced on redelivery"
    );
    assert!(app.drain_events().is_empty());
}

/// Two deliveries of one note at the same time publish one `note-saved`.
#[tokio::test]
async fn concurrent_deliveries_announce_once() {
    let mut app = App::new();
    let ev = created("1710253330000-k3j9x2a", "ada", true);
    let (first, second) = ([("a", &ev, 1)], [("b", &ev, 1)]);
    let (a, b) = tokio::join!(app.save(&first), app.save(&second));
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    let saved = app
        .drain_events()
        .into_iter()
        .filter(|e| matches!(e, NoteEvent::Saved { .. }))
        .count();
    assert_eq!(saved, 1);
}

/// A note deleted by its owner does not come back when an old delivery of its note-created arrives.
#[tokio::test]
async fn a_deleted_note_is_not_resurrected_by_a_redelivery() {
    let mut app = App::new();
    let token = app.signup_and_login("ada").await;
    let r = app
        .post(
            "/notes",
            json!({"content": "short-lived", "isPublic": true}),
            &token,
        )
        .await;
    let created_events = app.drain_events();
    app.save(&[("m1", &created_events[0], 1)]).await;
    let id = r.body["noteId"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/notes/{id}"), &token).await.status,
        200
    );
    app.drain_events();
    let out = app.save(&[("m2", &created_events[0], 2)]).await;
    assert!(out.is_empty(), "{out:?}");
    assert!(app.drain_events().is_empty(), "no second note-saved");
    assert_eq!(app.get("/notes", &token).await.body["count"], 0);
    assert_eq!(
        app.http("GET", "/notes/public", None, None).await.body["count"],
        0
    );
}

/// An event notify cannot read is dropped with a log line, not retried forever.
#[tokio::test]
async fn unreadable_events_are_not_retried() {
    let app = App::new();
    let mut ev = support::eventbridge_event(&saved("ada", false));
    ev["detail"] = json!({"eventType": "something-else"});
    let out = app.invoke(HandlerName::WebsocketNotify, ev).await;
    assert_eq!(out["delivered"], 0);
}

/// One note is one trace: publish puts the invocation's X-Ray header on `note-created`; save, given
/// it back by SQS as the record's `AWSTraceHeader`, publishes `note-saved` in that trace — each record
/// of a batch in its own note's.
#[tokio::test]
async fn a_note_keeps_its_trace_from_publish_to_note_saved() {
    let bus = Arc::new(TracingBus::default());
    let app = App::new().with(|d| d.bus = bus.clone());
    let token = app.signup_and_login("ada").await;
    let mut context = lambda_runtime::Context::default();
    context.xray_trace_id = Some("Root=1-674d0000-aaaaaaaaaaaaaaaaaaaaaaaa;Sampled=1".into());
    let body = json!({"content": "traced"}).to_string();
    let (handler, event) = App::http_event("POST", "/notes", Some(&body), Some(&token));
    let resp = notes_handlers::dispatch::invoke_json(handler, &app.deps, event, context)
        .await
        .unwrap();
    assert_eq!(resp["statusCode"], 202, "{resp}");
    assert_eq!(
        bus.published(),
        [(
            "note-created",
            Some("Root=1-674d0000-aaaaaaaaaaaaaaaaaaaaaaaa;Sampled=1".to_owned())
        )]
    );

    let (a, b) = (
        created("1710253330000-trace01", "ada", false),
        created("1710253330001-trace02", "ada", true),
    );
    let mut batch = sqs_event(&[("m1", envelope(&a), 1), ("m2", envelope(&b), 1)]);
    batch["Records"][0]["attributes"]["AWSTraceHeader"] =
        json!("Root=1-674d0000-bbbbbbbbbbbbbbbbbbbbbbbb;Sampled=1");
    batch["Records"][1]["attributes"]["AWSTraceHeader"] =
        json!("Root=1-674d0000-cccccccccccccccccccccccc;Sampled=1");
    app.invoke(HandlerName::NotesSave, batch).await;
    let mut saved: Vec<_> = bus.published().into_iter().skip(1).collect();
    saved.sort();
    assert_eq!(
        saved,
        [
            (
                "note-saved",
                Some("Root=1-674d0000-bbbbbbbbbbbbbbbbbbbbbbbb;Sampled=1".to_owned())
            ),
            (
                "note-saved",
                Some("Root=1-674d0000-cccccccccccccccccccccccc;Sampled=1".to_owned())
            ),
        ]
    );
}
