//! The environment contract of the original system, and the AWS-backed `Deps` built from it.
//! AWS clients come from aws-config, so `AWS_ENDPOINT_URL` points all of them at an emulator.

use std::sync::Arc;

use crate::adapters::apigw_management::{ApiGatewayNotifier, management_endpoint};
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::secrets_manager::SecretsManagerSecret;
use crate::deps::{Deps, Settings};
use crate::dispatch::HandlerName;

/// A required environment variable is missing or empty.
#[derive(Debug, thiserror::Error)]
#[error(
    "{handler} needs the environment variable {name} ({purpose}); set it in the function's configuration"
)]
pub struct MissingEnv {
    pub handler: HandlerName,
    pub name: &'static str,
    pub purpose: &'static str,
}

/// The variables a handler cannot run without.
pub fn required_env(handler: HandlerName) -> &'static [(&'static str, &'static str)] {
    use HandlerName::*;
    const TABLE: (&str, &str) = ("TABLE_NAME", "the data table");
    const CONNECTIONS: (&str, &str) = ("CONNECTIONS_TABLE_NAME", "the WebSocket connections table");
    const BUS: (&str, &str) = ("EVENT_BUS_NAME", "the event bus");
    const SECRET: (&str, &str) = (
        "SECRET_ARN",
        "the Secrets Manager secret holding the JWT key",
    );
    const WS: (&str, &str) = ("WEBSOCKET_API_ENDPOINT", "the WebSocket API endpoint");
    match handler {
        AuthSignup => &[TABLE],
        AuthLogin | AuthGetUser => &[TABLE, SECRET],
        NotesPublish => &[BUS, SECRET],
        NotesSave => &[TABLE, BUS],
        NotesGet => &[TABLE, SECRET],
        NotesGetPublic => &[TABLE],
        NotesUpdate | NotesDelete => &[TABLE, BUS, SECRET],
        WebsocketConnect => &[CONNECTIONS, SECRET],
        WebsocketDisconnect => &[CONNECTIONS],
        WebsocketNotify => &[CONNECTIONS, WS],
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Checks the handler's variables, then builds AWS clients once for the container's lifetime.
pub async fn deps_from_env(handler: HandlerName) -> Result<Deps, MissingEnv> {
    for &(name, purpose) in required_env(handler) {
        if var(name).trim().is_empty() {
            return Err(MissingEnv {
                handler,
                name,
                purpose,
            });
        }
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        var("TABLE_NAME"),
        var("CONNECTIONS_TABLE_NAME"),
    ));
    let bus = Arc::new(EventBridgeBus::new(
        aws_sdk_eventbridge::Client::new(&sdk),
        var("EVENT_BUS_NAME"),
    ));
    let secrets = Arc::new(SecretsManagerSecret::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        var("SECRET_ARN"),
    ));
    let ws_endpoint = var("WEBSOCKET_API_ENDPOINT");
    let mut mgmt = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk);
    if !ws_endpoint.is_empty() {
        mgmt = mgmt.endpoint_url(management_endpoint(&ws_endpoint, &var("WEBSOCKET_STAGE")));
    }
    let notifier = Arc::new(ApiGatewayNotifier::new(
        aws_sdk_apigatewaymanagement::Client::from_conf(mgmt.build()),
    ));
    let mut settings = Settings::default();
    let origin = var("ALLOWED_ORIGIN");
    if !origin.trim().is_empty() {
        settings.allowed_origin = origin.trim().to_owned();
    }
    if let Ok(n) = var("MAX_RECEIVE_COUNT").parse() {
        settings.max_receive_count = n;
    }
    Ok(Deps::new(
        store.clone(),
        store.clone(),
        bus,
        store,
        notifier,
        secrets,
        settings,
    ))
}
