//! What a handler declares about itself, beside its code: the environment it reads and how it is
//! triggered. The one declaration per handler is in `dispatch.rs`; `_HANDLER` parsing, the required
//! environment, the HTTP routes, the function names `notesctl` uses, and the template checks are all
//! derived from it.

/// An environment variable of the original system's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Env {
    TableName,
    ConnectionsTableName,
    EventBusName,
    SecretArn,
    AllowedOrigin,
    WebsocketApiEndpoint,
    WebsocketStage,
    MaxReceiveCount,
}

impl Env {
    pub const ALL: [Env; 8] = [
        Env::TableName,
        Env::ConnectionsTableName,
        Env::EventBusName,
        Env::SecretArn,
        Env::AllowedOrigin,
        Env::WebsocketApiEndpoint,
        Env::WebsocketStage,
        Env::MaxReceiveCount,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Env::TableName => "TABLE_NAME",
            Env::ConnectionsTableName => "CONNECTIONS_TABLE_NAME",
            Env::EventBusName => "EVENT_BUS_NAME",
            Env::SecretArn => "SECRET_ARN",
            Env::AllowedOrigin => "ALLOWED_ORIGIN",
            Env::WebsocketApiEndpoint => "WEBSOCKET_API_ENDPOINT",
            Env::WebsocketStage => "WEBSOCKET_STAGE",
            Env::MaxReceiveCount => "MAX_RECEIVE_COUNT",
        }
    }

    pub const fn purpose(self) -> &'static str {
        match self {
            Env::TableName => "the data table",
            Env::ConnectionsTableName => "the WebSocket connections table",
            Env::EventBusName => "the event bus",
            Env::SecretArn => "the Secrets Manager secret holding the JWT key",
            Env::AllowedOrigin => "the CORS origin, * by default",
            Env::WebsocketApiEndpoint => "the WebSocket API endpoint",
            Env::WebsocketStage => "the WebSocket API's stage",
            Env::MaxReceiveCount => "the processing queue's maxReceiveCount, 3 by default",
        }
    }

    /// Whether a handler that reads it cannot start without it (the others have defaults).
    pub const fn required(self) -> bool {
        !matches!(self, Env::AllowedOrigin | Env::MaxReceiveCount)
    }
}

/// How a handler is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A route of the HTTP API: `method` and `path` as API Gateway's route key has them.
    Http {
        method: &'static str,
        path: &'static str,
    },
    /// A route of the WebSocket API (`$connect`, `$disconnect`).
    WebSocket { route: &'static str },
    /// The note-processing queue, through an event source mapping.
    ProcessingQueue,
    /// EventBridge rules on the notes bus, for these detail-types.
    Events {
        detail_types: &'static [&'static str],
    },
}

/// `Trigger::Http`, as the declarations write it.
pub const fn http(method: &'static str, path: &'static str) -> Trigger {
    Trigger::Http { method, path }
}

/// `Trigger::WebSocket`, as the declarations write it.
pub const fn websocket(route: &'static str) -> Trigger {
    Trigger::WebSocket { route }
}

/// One handler's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// `_HANDLER`, the function's `Handler`, and the suffix of its name: `{Stage}-{name}`.
    pub name: &'static str,
    /// What people type: `notesctl tail save`.
    pub short: &'static str,
    /// Every variable it reads.
    pub env: &'static [Env],
    pub trigger: Trigger,
}

impl Spec {
    /// The variables it cannot start without.
    pub fn required_env(&self) -> impl Iterator<Item = Env> + '_ {
        self.env.iter().copied().filter(|e| e.required())
    }

    pub fn reads(&self, env: Env) -> bool {
        self.env.contains(&env)
    }

    /// `{stage}-{name}`: the Lambda function.
    pub fn function_name(&self, stage: &str) -> String {
        format!("{stage}-{}", self.name)
    }
}
