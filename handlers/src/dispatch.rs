//! One binary, many functions: `_HANDLER` names which handler this container runs.
//!
//! [`handlers!`] below is the one declaration of every handler — its name, its short name, its code,
//! the environment it reads and its trigger — and everything else is derived from it: the
//! [`HandlerName`] enum and its parsing, the Lambda runtime loop ([`run`]), in-process invocation
//! ([`invoke_json`]), the required environment (`config`), the HTTP routes (`router`), and the names
//! `notesctl` and the template checks use.

use std::str::FromStr;

use lambda_runtime::{Error, LambdaEvent, service_fn};

use crate::deps::Deps;
use crate::spec::{Env, Grant, Resource, Spec, Trigger, http, websocket};
use crate::{auth, notes, websocket};

macro_rules! handlers {
    ($($variant:ident: $name:literal as $short:literal => $($handle:ident)::+, env [$($env:ident),*], $trigger:expr, calls [$($res:ident($($op:ident),*)),*];)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum HandlerName {
            $($variant,)*
        }

        impl HandlerName {
            pub const ALL: &'static [HandlerName] = &[$(Self::$variant),*];

            /// Everything this handler declares.
            pub const fn spec(self) -> &'static Spec {
                match self {
                    $(Self::$variant => {
                        const SPEC: Spec = Spec {
                            name: $name,
                            short: $short,
                            env: &[$(Env::$env),*],
                            trigger: $trigger,
                            calls: &[$(Grant { on: Resource::$res, ops: &[$(stringify!($op)),*] }),*],
                        };
                        &SPEC
                    })*
                }
            }
        }

        /// Serves the named handler on the Lambda Runtime API until the container is stopped.
        pub async fn run(handler: HandlerName, deps: Deps) -> Result<(), Error> {
            let deps = &deps;
            match handler {
                $(HandlerName::$variant => {
                    lambda_runtime::run(service_fn(|e| traced(deps, e, $($handle)::+))).await
                })*
            }
        }

        /// Calls a handler as Lambda would, from JSON (tests and `notesctl dev`).
        pub async fn invoke_json(
            handler: HandlerName,
            deps: &Deps,
            payload: serde_json::Value,
            context: lambda_runtime::Context,
        ) -> Result<serde_json::Value, Error> {
            match handler {
                $(HandlerName::$variant => {
                    let event = LambdaEvent::new(serde_json::from_value(payload)?, context);
                    Ok(serde_json::to_value(traced(deps, event, $($handle)::+).await?)?)
                })*
            }
        }
    };
}

/// Runs a handler within the invocation's X-Ray trace, so what it publishes carries it on.
fn traced<'a, E, F, Fut>(
    deps: &'a Deps,
    event: LambdaEvent<E>,
    handle: F,
) -> impl std::future::Future<Output = Fut::Output> + 'a
where
    F: FnOnce(&'a Deps, LambdaEvent<E>) -> Fut,
    Fut: std::future::Future + 'a,
{
    let header = event.context.xray_trace_id.clone();
    crate::trace::within(header, handle(deps, event))
}

/// The result events notify pushes to the browsers.
const RESULT_EVENTS: &[&str] = &["note-saved", "note-failed", "note-updated", "note-deleted"];

// Each handler: its name (`_HANDLER`, the function's `Handler` and name suffix) as its short name,
// its code, every environment variable it reads, its trigger, and the AWS actions its code calls on
// each resource (IAM's names, without the service prefix the resource implies).
#[rustfmt::skip]
handlers! {
    AuthSignup: "auth-signup" as "signup" => auth::signup::handle, env [TableName, AllowedOrigin], http("POST", "/auth/signup"), calls [DataTable(PutItem)];
    AuthLogin: "auth-login" as "login" => auth::login::handle, env [TableName, SecretArn, AllowedOrigin], http("POST", "/auth/login"), calls [DataTable(GetItem), JwtSecret(GetSecretValue)];
    AuthGetUser: "auth-get-user" as "get-user" => auth::get_user::handle, env [TableName, SecretArn, AllowedOrigin], http("GET", "/auth/user"), calls [DataTable(GetItem), JwtSecret(GetSecretValue)];
    NotesPublish: "notes-publish" as "publish" => notes::publish::handle, env [EventBusName, SecretArn, AllowedOrigin], http("POST", "/notes"), calls [EventBus(PutEvents), JwtSecret(GetSecretValue)];
    NotesSave: "notes-save" as "save" => notes::save::handle, env [TableName, EventBusName, MaxReceiveCount, PublicFeedShards], Trigger::ProcessingQueue, calls [DataTable(GetItem, PutItem, UpdateItem), EventBus(PutEvents)];
    NotesGet: "notes-get" as "get" => notes::get::handle, env [TableName, SecretArn, AllowedOrigin], http("GET", "/notes"), calls [DataTable(Query), JwtSecret(GetSecretValue)];
    NotesGetPublic: "notes-get-public" as "get-public" => notes::get_public::handle, env [TableName, AllowedOrigin, PublicFeedShards], http("GET", "/notes/public"), calls [DataTable(Query, GetItem)];
    NotesUpdate: "notes-update" as "update" => notes::update::handle, env [TableName, EventBusName, SecretArn, AllowedOrigin], http("PUT", "/notes/{noteId}"), calls [DataTable(GetItem, UpdateItem), EventBus(PutEvents), JwtSecret(GetSecretValue)];
    NotesDelete: "notes-delete" as "delete" => notes::delete::handle, env [TableName, EventBusName, SecretArn, AllowedOrigin], http("DELETE", "/notes/{noteId}"), calls [DataTable(GetItem, DeleteItem, PutItem), EventBus(PutEvents), JwtSecret(GetSecretValue)];
    WebsocketConnect: "websocket-connect" as "connect" => websocket::connect::handle, env [ConnectionsTableName, SecretArn], websocket("$connect"), calls [ConnectionsTable(PutItem), JwtSecret(GetSecretValue)];
    WebsocketDisconnect: "websocket-disconnect" as "disconnect" => websocket::disconnect::handle, env [ConnectionsTableName], websocket("$disconnect"), calls [ConnectionsTable(GetItem, DeleteItem)];
    WebsocketNotify: "websocket-notify" as "notify" => websocket::notify::handle, env [ConnectionsTableName, WebsocketApiEndpoint, WebsocketStage, NotifyConcurrency], Trigger::Events { detail_types: RESULT_EVENTS }, calls [ConnectionsTable(Query, DeleteItem), WebSocketApi(ManageConnections)];
}

impl HandlerName {
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The handler a person means by `given`: its short name (`save`) or its name (`notes-save`).
    pub fn find(given: &str) -> Option<HandlerName> {
        Self::ALL
            .iter()
            .copied()
            .find(|h| given == h.spec().short || given == h.spec().name)
    }
}

impl std::fmt::Display for HandlerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnknownHandler {
    #[error("_HANDLER is not set; set it to one of: {}", names())]
    Missing,
    #[error("_HANDLER is '{given}', which is not a handler of notes-lambda; set it to one of: {list}", given = .0, list = names())]
    Unknown(String),
}

fn names() -> String {
    HandlerName::ALL
        .iter()
        .map(|h| h.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for HandlerName {
    type Err = UnknownHandler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UnknownHandler::Missing);
        }
        Self::ALL
            .iter()
            .copied()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownHandler::Unknown(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_unknown_names_say_what_to_do() {
        for &h in HandlerName::ALL {
            assert_eq!(h.as_str().parse::<HandlerName>().unwrap(), h);
            assert_eq!(HandlerName::find(h.spec().short), Some(h));
            assert_eq!(HandlerName::find(h.spec().name), Some(h));
        }
        assert_eq!(HandlerName::ALL.len(), 12);
        let shorts: std::collections::BTreeSet<_> =
            HandlerName::ALL.iter().map(|h| h.spec().short).collect();
        assert_eq!(shorts.len(), 12, "short names are unique");
        let e = "notes-explode"
            .parse::<HandlerName>()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notes-explode") && e.contains("auth-signup"),
            "{e}"
        );
        assert!(matches!(
            "".parse::<HandlerName>(),
            Err(UnknownHandler::Missing)
        ));
    }
}
