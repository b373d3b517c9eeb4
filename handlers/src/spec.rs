//! What a handler declares about itself, beside its code: the environment it reads, the AWS actions
//! its code calls and on which resource, and how it is triggered. The one declaration per handler is in `dispatch.rs`; `_HANDLER` parsing, the required
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
    PublicFeedShards,
    NotifyConcurrency,
}

impl Env {
    pub const ALL: [Env; 10] = [
        Env::TableName,
        Env::ConnectionsTableName,
        Env::EventBusName,
        Env::SecretArn,
        Env::AllowedOrigin,
        Env::WebsocketApiEndpoint,
        Env::WebsocketStage,
        Env::MaxReceiveCount,
        Env::PublicFeedShards,
        Env::NotifyConcurrency,
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
            Env::PublicFeedShards => "PUBLIC_FEED_SHARDS",
            Env::NotifyConcurrency => "NOTIFY_CONCURRENCY",
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
            Env::WebsocketStage => "the WebSocket API's stage, appended to its endpoint when set",
            Env::MaxReceiveCount => "the processing queue's maxReceiveCount, 3 by default",
            Env::PublicFeedShards => "the public feed's shard count, 8 by default",
            Env::NotifyConcurrency => "the posts notify makes at once, 256 by default",
        }
    }

    /// Whether a handler that reads it cannot start without it (the others have defaults, or, for
    /// the stage, an endpoint that already names it).
    pub const fn required(self) -> bool {
        !matches!(
            self,
            Env::AllowedOrigin
                | Env::MaxReceiveCount
                | Env::WebsocketStage
                | Env::PublicFeedShards
                | Env::NotifyConcurrency
        )
    }
}

/// An AWS resource of the app a function acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Users and notes.
    DataTable,
    /// The WebSocket connections.
    ConnectionsTable,
    /// The notes event bus.
    EventBus,
    /// The Secrets Manager secret holding the JWT key.
    JwtSecret,
    /// The WebSocket API's connections (`@connections`), which notify posts to.
    WebSocketApi,
    /// The note-processing queue.
    ProcessingQueue,
    /// The function's own log group.
    LogGroup,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::DataTable,
        Resource::ConnectionsTable,
        Resource::EventBus,
        Resource::JwtSecret,
        Resource::WebSocketApi,
        Resource::ProcessingQueue,
        Resource::LogGroup,
    ];

    /// The IAM service prefix of its actions.
    pub const fn service(self) -> &'static str {
        match self {
            Resource::DataTable | Resource::ConnectionsTable => "dynamodb",
            Resource::EventBus => "events",
            Resource::JwtSecret => "secretsmanager",
            Resource::WebSocketApi => "execute-api",
            Resource::ProcessingQueue => "sqs",
            Resource::LogGroup => "logs",
        }
    }

    /// The variable that names it to the code; `None` for what reaches the function through Lambda
    /// (the queue of its event source mapping, its log group).
    pub const fn env(self) -> Option<Env> {
        match self {
            Resource::DataTable => Some(Env::TableName),
            Resource::ConnectionsTable => Some(Env::ConnectionsTableName),
            Resource::EventBus => Some(Env::EventBusName),
            Resource::JwtSecret => Some(Env::SecretArn),
            Resource::WebSocketApi => Some(Env::WebsocketApiEndpoint),
            Resource::ProcessingQueue | Resource::LogGroup => None,
        }
    }
}

/// Operations of one resource's service, granted on that resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub on: Resource,
    /// IAM action names without the service prefix (`PutItem`).
    pub ops: &'static [&'static str],
}

/// One IAM action on one resource: `dynamodb:PutItem` on the data table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action {
    pub action: String,
    pub on: Resource,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {:?}", self.action, self.on)
    }
}

/// What Lambda itself needs the role to allow for every function: writing its own logs.
pub const LOG_GRANT: Grant = Grant {
    on: Resource::LogGroup,
    ops: &["CreateLogStream", "PutLogEvents"],
};

/// What an SQS event source mapping needs the role to allow (AWSLambdaSQSQueueExecutionRole).
pub const QUEUE_TRIGGER_GRANT: Grant = Grant {
    on: Resource::ProcessingQueue,
    ops: &["ReceiveMessage", "DeleteMessage", "GetQueueAttributes"],
};

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
    /// The AWS actions its code calls, by resource. The adapters are the truth: the contract suite
    /// records what they send and fails on an operation no handler declares.
    pub calls: &'static [Grant],
}

impl Spec {
    /// The variables it cannot start without.
    pub fn required_env(&self) -> impl Iterator<Item = Env> + '_ {
        self.env.iter().copied().filter(|e| e.required())
    }

    pub fn reads(&self, env: Env) -> bool {
        self.env.contains(&env)
    }

    /// The actions its code calls.
    pub fn code_actions(&self) -> Vec<Action> {
        expand(self.calls)
    }

    /// Everything its execution role must allow: its code's calls, what its trigger needs Lambda to
    /// do with the role, and its logs.
    pub fn role_actions(&self) -> Vec<Action> {
        let mut grants = self.calls.to_vec();
        if self.trigger == Trigger::ProcessingQueue {
            grants.push(QUEUE_TRIGGER_GRANT);
        }
        grants.push(LOG_GRANT);
        let mut out = expand(&grants);
        out.sort();
        out.dedup();
        out
    }

    /// `{stage}-{name}`: the Lambda function.
    pub fn function_name(&self, stage: &str) -> String {
        format!("{stage}-{}", self.name)
    }
}

fn expand(grants: &[Grant]) -> Vec<Action> {
    grants
        .iter()
        .flat_map(|g| {
            g.ops.iter().map(move |op| Action {
                action: format!("{}:{op}", g.on.service()),
                on: g.on,
            })
        })
        .collect()
}
