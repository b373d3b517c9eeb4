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

/// Required fix 6 on DynamoDB: broadcasting reads the registry index with Query; a Scan would find
/// no rule here and fail the test.
#[tokio::test]
async fn fix6_all_connections_is_a_query_of_the_index_never_a_scan() {
    let query = mock!(aws_sdk_dynamodb::Client::query)
        .match_requests(|r| {
            r.table_name() == Some("conns")
                && r.expression_attribute_values()
                    .and_then(|v| v.get(":pk"))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk == "CONNECTIONS")
        })
        .then_output(|| {
            let item = |id: &str, user: &str| {
                [
                    ("pk", "CONNECTIONS".to_owned()),
                    ("sk", format!("CONNECTION#{id}")),
                    ("connectionId", id.to_owned()),
                    ("username", user.to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
                .collect()
            };
            QueryOutput::builder()
                .items(item("c1", "ada"))
                .items(item("c2", "bob"))
                .build()
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query]);
    let store = DynamoStore::new(client, "data", "conns");
    let all = store.all_connections().await.unwrap();
    let users: Vec<_> = all
        .iter()
        .map(|c| (c.connection_id.as_str(), c.username.as_str()))
        .collect();
    assert_eq!(users, vec![("c1", "ada"), ("c2", "bob")]);
    assert_eq!(query.num_calls(), 1);
}
