//! An app on embedded ports, driven in-process the way Lambda drives it: real event fixtures in,
//! `LambdaEvent` + `Context::default()`, responses parsed back from their wire JSON.
#![allow(dead_code)]

pub mod fakes;

use std::sync::Arc;

use lambda_runtime::Context;
use notes_handlers::HandlerName;
use notes_handlers::deps::{Deps, Settings};
use notes_handlers::dispatch::invoke_json;
use notes_handlers::domain::events::NoteEvent;
use notes_handlers::embedded::{self, EmbeddedStore, LocalNotifier, StaticSecret};
use notes_handlers::router;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!!";

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

pub struct Response {
    pub status: u16,
    pub body: Value,
    pub raw: Value,
}

pub struct App {
    pub deps: Deps,
    pub store: EmbeddedStore,
    pub notifier: LocalNotifier,
    pub events: UnboundedReceiver<NoteEvent>,
}

impl App {
    pub fn new() -> Self {
        let store = EmbeddedStore::in_memory();
        let (deps, notifier, events) = embedded::deps(
            store.clone(),
            Arc::new(StaticSecret::new(SECRET)),
            Settings::default(),
        );
        Self {
            deps,
            store,
            notifier,
            events,
        }
    }

    /// The same app with other ports swapped in.
    pub fn with(mut self, f: impl FnOnce(&mut Deps)) -> Self {
        f(&mut self.deps);
        self
    }

    pub async fn invoke(&self, handler: HandlerName, payload: Value) -> Value {
        invoke_json(handler, &self.deps, payload, Context::default())
            .await
            .unwrap_or_else(|e| panic!("{handler} returned an error instead of a response: {e}"))
    }

    /// An HTTP API v2 event from the fixture, routed as API Gateway would.
    pub fn http_event(
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (HandlerName, Value) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let matched = router::route(&method.parse().unwrap(), path).expect("a known route");
        let mut ev = fixture("http-api-v2.json");
        ev["routeKey"] = json!(matched.route_key);
        ev["rawPath"] = json!(path);
        ev["rawQueryString"] = json!(query);
        ev["requestContext"]["http"]["method"] = json!(method);
        ev["requestContext"]["http"]["path"] = json!(path);
        ev["requestContext"]["routeKey"] = json!(matched.route_key);
        let mut qs = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            qs.insert(k.to_owned(), json!(v));
        }
        if !qs.is_empty() {
            ev["queryStringParameters"] = Value::Object(qs);
        }
        if !matched.path_parameters.is_empty() {
            ev["pathParameters"] = Value::Object(
                matched
                    .path_parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            );
        }
        match body {
            Some(b) => ev["body"] = json!(b),
            None => {
                ev.as_object_mut().unwrap().remove("body");
            }
        }
        if let Some(t) = token {
            ev["headers"]["authorization"] = json!(format!("Bearer {t}"));
        }
        (matched.handler, ev)
    }

    pub async fn http_raw(&self, handler: HandlerName, event: Value) -> Response {
        let raw = self.invoke(handler, event).await;
        let status = raw["statusCode"].as_u64().expect("statusCode") as u16;
        let body = raw
            .get("body")
            .and_then(Value::as_str)
            .map(|b| serde_json::from_str(b).expect("response bodies are JSON"))
            .unwrap_or(Value::Null);
        Response { status, body, raw }
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Response {
        let text = body.map(|b| b.to_string());
        let (handler, ev) = Self::http_event(method, path, text.as_deref(), token);
        self.http_raw(handler, ev).await
    }

    /// A POST without a token (sign-up, login).
    pub async fn post_anonymous(&self, path: &str, body: Value) -> Response {
        self.http("POST", path, Some(body), None).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http("GET", path, None, Some(token)).await
    }

    pub async fn post(&self, path: &str, body: Value, token: &str) -> Response {
        self.http("POST", path, Some(body), Some(token)).await
    }

    pub async fn put(&self, path: &str, body: Value, token: &str) -> Response {
        self.http("PUT", path, Some(body), Some(token)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.http("DELETE", path, None, Some(token)).await
    }

    /// Runs notify on `event` as the rule delivers it; its report.
    pub async fn notify(&self, event: &NoteEvent) -> Value {
        self.invoke(HandlerName::WebsocketNotify, eventbridge_event(event))
            .await
    }

    /// A WebSocket route (`$connect`, `$disconnect`) for a connection; the gateway response.
    pub async fn ws(&self, route: &str, connection_id: &str, token: Option<&str>) -> Value {
        let handler = match route {
            "$connect" => HandlerName::WebsocketConnect,
            _ => HandlerName::WebsocketDisconnect,
        };
        self.invoke(handler, ws_event(route, connection_id, token))
            .await
    }

    /// Runs save on one SQS batch of `(messageId, event, receiveCount)`; the ids it reported failed.
    pub async fn save(&self, records: &[(&str, &NoteEvent, u32)]) -> Vec<String> {
        let batch: Vec<(&str, String, u32)> = records
            .iter()
            .map(|(id, ev, count)| (*id, envelope(ev), *count))
            .collect();
        let out = self.invoke(HandlerName::NotesSave, sqs_event(&batch)).await;
        out["batchItemFailures"]
            .as_array()
            .expect("a partial batch response")
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn signup_and_login(&self, username: &str) -> String {
        let creds = json!({"username": username, "password": "correct horse battery"});
        let r = self.post_anonymous("/auth/signup", creds.clone()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = self.post_anonymous("/auth/login", creds).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub fn drain_events(&mut self) -> Vec<NoteEvent> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Publishes a note and runs save on the `note-created` event it produced; returns the noteId.
    pub async fn post_and_save(&mut self, token: &str, content: &str, is_public: bool) -> String {
        let body = json!({"content": content, "isPublic": is_public});
        let r = self.post("/notes", body, token).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let created: Vec<_> = self.drain_events();
        assert!(self.save(&[("m1", &created[0], 1)]).await.is_empty());
        self.drain_events();
        r.body["noteId"].as_str().unwrap().to_owned()
    }
}

/// An EventBridge envelope around an event, as the rule delivers it into SQS.
pub fn envelope(event: &NoteEvent) -> String {
    json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": event.detail_type(), "source": "notes.service",
        "account": "123456789012", "time": "2024-03-12T14:22:10Z", "region": "eu-west-2",
        "resources": [], "detail": serde_json::to_value(event).unwrap()
    })
    .to_string()
}

/// An SQS batch from the fixture with the given `(messageId, body, receiveCount)` records.
pub fn sqs_event(records: &[(&str, String, u32)]) -> Value {
    let template = fixture("sqs-eventbridge.json")["Records"][0].clone();
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body, count)| {
            let mut r = template.clone();
            r["messageId"] = json!(id);
            r["body"] = json!(body);
            r["attributes"]["ApproximateReceiveCount"] = json!(count.to_string());
            r
        })
        .collect();
    json!({ "Records": records })
}

/// An EventBridge event (as the notify rule delivers it) carrying `event`.
pub fn eventbridge_event(event: &NoteEvent) -> Value {
    let mut ev = fixture("eventbridge-note-saved.json");
    ev["detail-type"] = json!(event.detail_type());
    ev["detail"] = serde_json::to_value(event).unwrap();
    ev
}

/// A WebSocket `$connect`/`$disconnect` event.
pub fn ws_event(route: &str, connection_id: &str, token: Option<&str>) -> Value {
    let mut ev = fixture("websocket-connect.json");
    ev["requestContext"]["routeKey"] = json!(route);
    ev["requestContext"]["eventType"] = json!(if route == "$connect" {
        "CONNECT"
    } else {
        "DISCONNECT"
    });
    ev["requestContext"]["connectionId"] = json!(connection_id);
    match token {
        Some(t) => {
            ev["queryStringParameters"] = json!({"token": t});
            ev["multiValueQueryStringParameters"] = json!({"token": [t]});
        }
        None => {
            let o = ev.as_object_mut().unwrap();
            o.remove("queryStringParameters");
            o.remove("multiValueQueryStringParameters");
        }
    }
    ev
}
