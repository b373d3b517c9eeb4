//! The environment contract of the original system (each handler's part of it is declared in
//! `dispatch.rs`), and the AWS-backed `Deps` built from it.
//! AWS clients come from aws-config, so `AWS_ENDPOINT_URL` points all of them at an emulator.

use std::sync::Arc;

use crate::adapters::apigw_management::{ApiGatewayNotifier, management_endpoint};
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::emf::EmfSink;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::lazy::{LazyClient, LazyConfig};
use crate::adapters::secrets_manager::SecretsManagerSecret;
use crate::deps::{Deps, Settings};
use crate::dispatch::HandlerName;
use crate::domain::feed::ShardCount;
use crate::spec::Env;

/// The function's configuration cannot work: a required variable is missing, or one is set to
/// something the handler cannot use. Either fails the init, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{handler} needs the environment variable {name} ({purpose}); set it in the function's configuration",
        name = .env.name(),
        purpose = .env.purpose()
    )]
    Missing { handler: HandlerName, env: Env },
    #[error(
        "{handler}: the environment variable {name} is {value:?}, not {expected}; fix it in the function's configuration (or remove it for the default)",
        name = .env.name()
    )]
    Invalid {
        handler: HandlerName,
        env: Env,
        value: String,
        expected: &'static str,
    },
}

/// The most posts notify makes at once (one connection each to API Gateway).
pub const MAX_NOTIFY_CONCURRENCY: usize = 1000;

/// How long each step of a container's init took, in microseconds: logged once as the `init`
/// event, so a slow cold start says where its time went (and `scripts/bench.sh cold-start` reads it).
#[derive(Debug, Clone, Copy, Default)]
pub struct InitPhases {
    /// When `main` began, in microseconds since the epoch: the time before it (exec, loading, the
    /// async runtime) is the process's own.
    pub main_at_us: u128,
    /// The JSON log subscriber.
    pub logs_us: u128,
    /// Reading and checking the handler's variables.
    pub env_us: u128,
    /// The JWT secret's fetch (handlers that check tokens), with what it needs first: aws-config
    /// (provider chains, the HTTPS client) and the Secrets Manager client. Other handlers make
    /// these on their first AWS call, not at init.
    pub secret_us: u128,
}

impl InitPhases {
    pub fn log(&self, handler: HandlerName) {
        tracing::info!(
            handler = handler.as_str(),
            main_at_us = self.main_at_us as u64,
            logs_us = self.logs_us as u64,
            env_us = self.env_us as u64,
            secret_us = self.secret_us as u64,
            "init"
        );
    }
}

/// Checks the handler's variables and wires the AWS adapters, whose clients are made on first use
/// and kept for the container's lifetime. Only the variables the handler declares are read.
pub async fn deps_from_env(
    handler: HandlerName,
    phases: &mut InitPhases,
) -> Result<Deps, ConfigError> {
    let step = std::time::Instant::now();
    let spec = handler.spec();
    let var = |env: Env| {
        if spec.reads(env) {
            std::env::var(env.name()).unwrap_or_default()
        } else {
            String::new()
        }
    };
    if let Some(env) = spec.required_env().find(|e| var(*e).trim().is_empty()) {
        return Err(ConfigError::Missing { handler, env });
    }
    let mut settings = Settings::default();
    let origin = var(Env::AllowedOrigin);
    if !origin.trim().is_empty() {
        settings.allowed_origin = origin.trim().to_owned();
    }
    let max_receive = var(Env::MaxReceiveCount);
    if !max_receive.trim().is_empty() {
        settings.max_receive_count = match max_receive.trim().parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(ConfigError::Invalid {
                    handler,
                    env: Env::MaxReceiveCount,
                    value: max_receive,
                    expected: "a whole number of at least 1 (the queue's maxReceiveCount)",
                });
            }
        };
    }
    let concurrency = var(Env::NotifyConcurrency);
    if !concurrency.trim().is_empty() {
        settings.notify_concurrency = match concurrency.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_NOTIFY_CONCURRENCY).contains(&n) => n,
            _ => {
                return Err(ConfigError::Invalid {
                    handler,
                    env: Env::NotifyConcurrency,
                    value: concurrency,
                    expected: "a whole number from 1 to 1000 (the WebSocket stack's NotifyConcurrency)",
                });
            }
        };
    }
    let shards = var(Env::PublicFeedShards);
    let shards = if shards.trim().is_empty() {
        ShardCount::default()
    } else {
        ShardCount::parse(&shards).map_err(|_| ConfigError::Invalid {
            handler,
            env: Env::PublicFeedShards,
            value: shards.clone(),
            expected: "a whole number from 1 to 64 (the notes stack's PublicFeedShards)",
        })?
    };
    phases.env_us = step.elapsed().as_micros();
    // Nothing of AWS is made yet: aws-config loads, and each client is built, when a request first
    // needs it (see `adapters::lazy`).
    let aws = LazyConfig::default();
    let store = Arc::new(
        DynamoStore::new(
            LazyClient::on_first_use(&aws, aws_sdk_dynamodb::Client::new),
            var(Env::TableName),
            var(Env::ConnectionsTableName),
        )
        .with_feed_shards(shards),
    );
    let bus = Arc::new(EventBridgeBus::new(
        LazyClient::on_first_use(&aws, aws_sdk_eventbridge::Client::new),
        var(Env::EventBusName),
    ));
    let secrets = Arc::new(SecretsManagerSecret::new(
        LazyClient::on_first_use(&aws, aws_sdk_secretsmanager::Client::new),
        var(Env::SecretArn),
    ));
    let ws_endpoint = var(Env::WebsocketApiEndpoint);
    let ws_stage = var(Env::WebsocketStage);
    let notifier = Arc::new(ApiGatewayNotifier::new(LazyClient::on_first_use(
        &aws,
        move |sdk| {
            let mut mgmt = aws_sdk_apigatewaymanagement::config::Builder::from(sdk);
            if !ws_endpoint.is_empty() {
                mgmt = mgmt.endpoint_url(management_endpoint(&ws_endpoint, &ws_stage));
            }
            aws_sdk_apigatewaymanagement::Client::from_conf(mgmt.build())
        },
    )));
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    Ok(Deps::new(
        store.clone(),
        store.clone(),
        bus,
        store,
        notifier,
        secrets,
        settings,
    )
    .with_metrics(Arc::new(EmfSink::for_function(&function, handler.as_str()))))
}
