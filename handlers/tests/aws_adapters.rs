//! The AWS adapters against recorded SDK responses, for the answers moto cannot give: 410 Gone,
//! throttling, refused PutEvents entries — and a check that broadcasts never Scan.

use aws_sdk_apigatewaymanagement::operation::post_to_connection::{
    PostToConnectionError, PostToConnectionOutput,
};
use aws_sdk_apigatewaymanagement::types::error::{
    ForbiddenException, GoneException, LimitExceededException,
};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use notes_handlers::adapters::apigw_management::ApiGatewayNotifier;
use notes_handlers::adapters::dynamodb::DynamoStore;
use notes_handlers::adapters::eventbridge::EventBridgeBus;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::domain::note::NoteId;
use notes_handlers::ports::{ConnectionRegistry, EventBus, Notifier, NotifyError, Posted};

#[tokio::test]
async fn post_to_connection_outcomes() {
    let ok = mock!(aws_sdk_apigatewaymanagement::Client::post_to_connection)
        .match_requests(|r| r.connection_id() == Some("live"))
        .then_output(|| PostToConnectionOutput::builder().build());
    let gone = mock!(aws_sdk_apigatewaymanagement::Client::post_to_connection)
        .match_requests(|r| r.connection_id() == Some("gone"))
        .then_error(|| PostToConnectionError::GoneException(GoneException::builder().build()));
    let throttled = mock!(aws_sdk_apigatewaymanagement::Client::post_to_connection)
        .match_requests(|r| r.connection_id() == Some("throttled"))
        .then_error(|| {
            PostToConnectionError::LimitExceededException(LimitExceededException::builder().build())
        });
    let forbidden = mock!(aws_sdk_apigatewaymanagement::Client::post_to_connection)
        .match_requests(|r| r.connection_id() == Some("forbidden"))
        .then_error(|| {
            PostToConnectionError::ForbiddenException(ForbiddenException::builder().build())
        });
    let broken = mock!(aws_sdk_apigatewaymanagement::Client::post_to_connection)
        .match_requests(|r| r.connection_id() == Some("broken"))
        .then_http_response(|| {
            HttpResponse::new(StatusCode::try_from(500).unwrap(), SdkBody::from("{}"))
        });
    let client = mock_client!(
        aws_sdk_apigatewaymanagement,
        RuleMode::MatchAny,
        [&ok, &gone, &throttled, &forbidden, &broken],
        |c| c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
    );
    let notifier = ApiGatewayNotifier::new(client);
    assert_eq!(
        notifier.post("live", b"{}").await.unwrap(),
        Posted::Delivered
    );
    assert_eq!(notifier.post("gone", b"{}").await.unwrap(), Posted::Gone);
    assert!(matches!(
        notifier.post("throttled", b"{}").await,
        Err(NotifyError::Retryable { .. })
    ));
    assert!(matches!(
        notifier.post("broken", b"{}").await,
        Err(NotifyError::Retryable { .. })
    ));
    assert!(matches!(
        notifier.post("forbidden", b"{}").await,
        Err(NotifyError::Failed { .. })
    ));
}

fn saved(i: usize) -> NoteEvent {
    NoteEvent::Saved {
        note_id: NoteId::parse(&format!("1710253330000-n{i}")).unwrap(),
        username: "ada".into(),
        content: "x".into(),
        is_public: false,
        saved_at: "t".into(),
        timestamp: "t".into(),
    }
}

#[tokio::test]
async fn refused_put_events_entries_are_reported_by_index() {
    let first = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| r.entries().len() == 10)
        .then_output(|| {
            let mut b = PutEventsOutput::builder().failed_entry_count(1);
            for i in 0..10 {
                b = b.entries(if i == 3 {
                    PutEventsResultEntry::builder()
                        .error_code("InternalFailure")
                        .error_message("try again")
                        .build()
                } else {
                    PutEventsResultEntry::builder()
                        .event_id(format!("e{i}"))
                        .build()
                });
            }
            b.build()
        });
    let second = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| r.entries().len() == 2)
        .then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("a").build())
                .entries(PutEventsResultEntry::builder().event_id("b").build())
                .build()
        });
    let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&first, &second]);
    let bus = EventBridgeBus::new(client, "bus");
    let events: Vec<_> = (0..12).map(saved).collect();
    let report = bus.publish(&events).await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].index, 3);
    assert_eq!(report.failed[0].code, "InternalFailure");
    assert_eq!(
        (first.num_calls(), second.num_calls()),
        (1, 1),
        "chunks of at most 10"
    );
}

/// Entries carry the trace of the work that publishes them as EventBridge's `TraceHeader`, and none
/// outside a trace.
#[tokio::test]
async fn put_events_entries_carry_the_current_trace() {
    const HEADER: &str = "Root=1-674d0000-aaaaaaaaaaaaaaaaaaaaaaaa;Sampled=1";
    let traced = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| r.entries()[0].trace_header() == Some(HEADER))
        .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
    let untraced = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| r.entries()[0].trace_header().is_none())
        .then_output(|| PutEventsOutput::builder().failed_entry_count(0).build());
    let client = mock_client!(
        aws_sdk_eventbridge,
        RuleMode::MatchAny,
        [&traced, &untraced]
    );
    let bus = EventBridgeBus::new(client, "bus");
    notes_handlers::trace::within(Some(HEADER.into()), bus.publish(&[saved(0)]))
        .await
        .unwrap();
    bus.publish(&[saved(1)]).await.unwrap();
    assert_eq!((traced.num_calls(), untraced.num_calls()), (1, 1));
}

/// Required fix 6 on DynamoDB: broadcasting reads the registry index with Queries of its shards; a
/// Scan would find no rule here and fail the test.
#[tokio::test]
async fn fix6_all_connections_queries_the_index_never_scans() {
    let query = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.table_name() == Some("conns")
                && r.expression_attribute_values()
                    .and_then(|v| v.get(":pk"))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("CONNECTIONS#"))
        })
        .then_compute_output(|req| {
            let shard = req.expression_attribute_values().unwrap()[":pk"]
                .as_s()
                .unwrap()
                .clone();
            let mut out = QueryOutput::builder();
            for (id, user) in [("c1", "ada"), ("c2", "bob"), ("c3", "eve")] {
                if notes_handlers::adapters::dynamodb::index_pk(id) == shard {
                    out = out.items(
                        [
                            ("pk", shard.clone()),
                            ("sk", format!("CONNECTION#{id}")),
                            ("connectionId", id.into()),
                            ("username", user.into()),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
                        .collect(),
                    );
                }
            }
            out.build()
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query]);
    let store = DynamoStore::new(client, "data", "conns");
    let mut users: Vec<_> = store
        .all_connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.connection_id, c.username))
        .collect();
    users.sort();
    assert_eq!(
        users,
        vec![
            ("c1".into(), "ada".into()),
            ("c2".into(), "bob".into()),
            ("c3".into(), "eve".into())
        ]
    );
    assert_eq!(
        query.num_calls(),
        notes_handlers::adapters::dynamodb::INDEX_SHARDS as usize
    );
}

fn stored_note(pk: &str, public: bool) -> std::collections::HashMap<String, AttributeValue> {
    let id = NoteId::parse("1710253330000-k3j9x2a").unwrap();
    [
        ("pk", AttributeValue::S(pk.into())),
        ("sk", AttributeValue::S(id.sort_key())),
        ("noteId", AttributeValue::S(id.as_str().into())),
        ("username", AttributeValue::S("ada".into())),
        ("content", AttributeValue::S("hi".into())),
        ("isPublic", AttributeValue::Bool(public)),
        ("status", AttributeValue::S("saved".into())),
        ("createdAt", AttributeValue::S(id.created_at())),
        ("savedAt", AttributeValue::S(id.created_at())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Required fix 3 on DynamoDB: update and delete read and write the owner's note by its key — a
/// GetItem and a transaction on `USER#{caller}` — never a Query or Scan over the owner's notes.
#[tokio::test]
async fn fix3_update_and_delete_go_by_key() {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use notes_handlers::ports::NoteStore;
    let id = NoteId::parse("1710253330000-k3j9x2a").unwrap();
    let sk = id.sort_key();
    let get = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(move |r| {
            let k = r.key().unwrap();
            k["pk"].as_s().unwrap() == "USER#ada" && k["sk"].as_s().unwrap() == &sk
        })
        .then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(stored_note("USER#ada", true)))
                .build()
        });
    let other = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.key().unwrap()["pk"].as_s().unwrap() == "USER#eve")
        .then_output(|| GetItemOutput::builder().build());
    let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .match_requests(|r| {
            r.transact_items().iter().all(|i| {
                let key = i
                    .update()
                    .map(|u| u.key())
                    .or(i.delete().map(|d| d.key()))
                    .or(i.put().map(|p| p.item()));
                key.is_some_and(|k| {
                    let pk = k["pk"].as_s().unwrap();
                    pk == "USER#ada" || pk == "PUBLIC#NOTES"
                })
            })
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&get, &other, &transact]
    );
    let store = DynamoStore::new(client, "data", "conns");
    let updated = store
        .update_content("ada", &id, "edited", "t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.content, "edited");
    assert!(
        store
            .delete_note("ada", &id, i64::MAX)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .update_content("eve", &id, "pwned", "t")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.delete_note("eve", &id, i64::MAX).await.unwrap(), None);
    assert_eq!(transact.num_calls(), 2, "eve's calls stop at the GetItem");
}

/// Required fix 7 on DynamoDB: when a Query stops early at its 1 MB page with fewer items than
/// asked for, the page still carries a cursor (the original stopped there silently).
#[tokio::test]
async fn fix7_an_early_stop_at_one_megabyte_still_gives_a_cursor() {
    use notes_handlers::domain::cursor::PageRequest;
    use notes_handlers::ports::NoteStore;
    let query = mock!(aws_sdk_dynamodb::Client::query).then_output(|| {
        let item = stored_note("USER#ada", false);
        let last = [
            ("pk", "USER#ada".to_owned()),
            ("sk", item["sk"].as_s().unwrap().clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
        .collect();
        QueryOutput::builder()
            .items(item)
            .set_last_evaluated_key(Some(last))
            .build()
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query]);
    let store = DynamoStore::new(client, "data", "conns");
    let page = store
        .list_user_notes(
            "ada",
            &PageRequest {
                after: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.next.as_deref(),
        Some(
            NoteId::parse("1710253330000-k3j9x2a")
                .unwrap()
                .sort_key()
                .as_str()
        )
    );
}

/// A failed store call keeps the SDK's error as its cause: `source()` reaches it (and the service's
/// code), `chain()` puts every layer on one line, and a throttled call is marked retryable.
#[tokio::test]
async fn store_errors_keep_their_cause() {
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_smithy_runtime_api::client::result::SdkError;
    use notes_handlers::ports::UserStore;
    let throttled = mock!(aws_sdk_dynamodb::Client::get_item).then_error(|| {
        GetItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("Rate of requests exceeds the allowed throughput")
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .message("Rate of requests exceeds the allowed throughput")
                        .build(),
                )
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&throttled], |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    let store = DynamoStore::new(client, "data", "conns");
    let err = store.get_user("ada").await.unwrap_err();
    assert!(err.is_throttled());
    let cause = std::error::Error::source(&err).expect("a cause");
    let sdk = cause
        .downcast_ref::<SdkError<GetItemError, HttpResponse>>()
        .expect("the SDK's own error, not its text");
    assert!(matches!(
        sdk.as_service_error(),
        Some(GetItemError::ProvisionedThroughputExceededException(_))
    ));
    let line = err.chain().to_string();
    assert!(
        line.starts_with(&err.to_string())
            && line.contains("Rate of requests exceeds the allowed throughput"),
        "{line}"
    );
}
