//! One binary, many functions: `_HANDLER` names which handler this container runs.

use std::str::FromStr;

use lambda_runtime::{Error, LambdaEvent, service_fn};

use crate::deps::Deps;
use crate::{auth, notes, websocket};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerName {
    AuthSignup,
    AuthLogin,
    AuthGetUser,
    NotesPublish,
    NotesSave,
    NotesGet,
    NotesGetPublic,
    NotesUpdate,
    NotesDelete,
    WebsocketConnect,
    WebsocketDisconnect,
    WebsocketNotify,
}

impl HandlerName {
    pub const ALL: [HandlerName; 12] = [
        Self::AuthSignup,
        Self::AuthLogin,
        Self::AuthGetUser,
        Self::NotesPublish,
        Self::NotesSave,
        Self::NotesGet,
        Self::NotesGetPublic,
        Self::NotesUpdate,
        Self::NotesDelete,
        Self::WebsocketConnect,
        Self::WebsocketDisconnect,
        Self::WebsocketNotify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthSignup => "auth-signup",
            Self::AuthLogin => "auth-login",
            Self::AuthGetUser => "auth-get-user",
            Self::NotesPublish => "notes-publish",
            Self::NotesSave => "notes-save",
            Self::NotesGet => "notes-get",
            Self::NotesGetPublic => "notes-get-public",
            Self::NotesUpdate => "notes-update",
            Self::NotesDelete => "notes-delete",
            Self::WebsocketConnect => "websocket-connect",
            Self::WebsocketDisconnect => "websocket-disconnect",
            Self::WebsocketNotify => "websocket-notify",
        }
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
    HandlerName::ALL.map(HandlerName::as_str).join(", ")
}

impl FromStr for HandlerName {
    type Err = UnknownHandler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UnknownHandler::Missing);
        }
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownHandler::Unknown(s.to_owned()))
    }
}

/// Serves the named handler on the Lambda Runtime API until the container is stopped.
pub async fn run(handler: HandlerName, deps: Deps) -> Result<(), Error> {
    let deps = &deps;
    use HandlerName::*;
    match handler {
        AuthSignup => lambda_runtime::run(service_fn(|e| auth::signup::handle(deps, e))).await,
        AuthLogin => lambda_runtime::run(service_fn(|e| auth::login::handle(deps, e))).await,
        AuthGetUser => lambda_runtime::run(service_fn(|e| auth::get_user::handle(deps, e))).await,
        NotesPublish => lambda_runtime::run(service_fn(|e| notes::publish::handle(deps, e))).await,
        NotesSave => lambda_runtime::run(service_fn(|e| notes::save::handle(deps, e))).await,
        NotesGet => lambda_runtime::run(service_fn(|e| notes::get::handle(deps, e))).await,
        NotesGetPublic => {
            lambda_runtime::run(service_fn(|e| notes::get_public::handle(deps, e))).await
        }
        NotesUpdate => lambda_runtime::run(service_fn(|e| notes::update::handle(deps, e))).await,
        NotesDelete => lambda_runtime::run(service_fn(|e| notes::delete::handle(deps, e))).await,
        WebsocketConnect => {
            lambda_runtime::run(service_fn(|e| websocket::connect::handle(deps, e))).await
        }
        WebsocketDisconnect => {
            lambda_runtime::run(service_fn(|e| websocket::disconnect::handle(deps, e))).await
        }
        WebsocketNotify => {
            lambda_runtime::run(service_fn(|e| websocket::notify::handle(deps, e))).await
        }
    }
}

/// Used by tests and `notesctl dev` to call a handler as Lambda would, from JSON.
pub async fn invoke_json(
    handler: HandlerName,
    deps: &Deps,
    payload: serde_json::Value,
    context: lambda_runtime::Context,
) -> Result<serde_json::Value, Error> {
    fn ev<T: serde::de::DeserializeOwned>(
        payload: serde_json::Value,
        context: lambda_runtime::Context,
    ) -> Result<LambdaEvent<T>, Error> {
        Ok(LambdaEvent::new(serde_json::from_value(payload)?, context))
    }
    use HandlerName::*;
    let value = match handler {
        AuthSignup => {
            serde_json::to_value(auth::signup::handle(deps, ev(payload, context)?).await?)?
        }
        AuthLogin => serde_json::to_value(auth::login::handle(deps, ev(payload, context)?).await?)?,
        AuthGetUser => {
            serde_json::to_value(auth::get_user::handle(deps, ev(payload, context)?).await?)?
        }
        NotesPublish => {
            serde_json::to_value(notes::publish::handle(deps, ev(payload, context)?).await?)?
        }
        NotesSave => serde_json::to_value(notes::save::handle(deps, ev(payload, context)?).await?)?,
        NotesGet => serde_json::to_value(notes::get::handle(deps, ev(payload, context)?).await?)?,
        NotesGetPublic => {
            serde_json::to_value(notes::get_public::handle(deps, ev(payload, context)?).await?)?
        }
        NotesUpdate => {
            serde_json::to_value(notes::update::handle(deps, ev(payload, context)?).await?)?
        }
        NotesDelete => {
            serde_json::to_value(notes::delete::handle(deps, ev(payload, context)?).await?)?
        }
        WebsocketConnect => {
            serde_json::to_value(websocket::connect::handle(deps, ev(payload, context)?).await?)?
        }
        WebsocketDisconnect => {
            serde_json::to_value(websocket::disconnect::handle(deps, ev(payload, context)?).await?)?
        }
        WebsocketNotify => {
            serde_json::to_value(websocket::notify::handle(deps, ev(payload, context)?).await?)?
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_unknown_names_say_what_to_do() {
        for h in HandlerName::ALL {
            assert_eq!(h.as_str().parse::<HandlerName>().unwrap(), h);
        }
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
