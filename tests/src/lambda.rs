//! A local Lambda Runtime API (the 2018-06-01 interface a custom runtime polls), and the
//! `notes-lambda` binary started against it as a real process, the way Lambda runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

struct Invocation {
    id: String,
    payload: Value,
}

#[derive(Default)]
struct Shared {
    pending: HashMap<String, oneshot::Sender<Result<Value, Value>>>,
    init_error: Option<Value>,
    served: usize,
}

#[derive(Clone)]
struct AppState {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    shared: Arc<Mutex<Shared>>,
}

/// The Runtime API server. Invocations are queued; the runtime takes them with `next`.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    tx: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Mutex<Shared>>,
}

async fn next(State(state): State<AppState>) -> Response {
    let Some(inv) = state.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    state.shared.lock().unwrap().served += 1;
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", inv.id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:local"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0"
            .parse()
            .unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    (StatusCode::OK, headers, inv.payload.to_string()).into_response()
}

fn finish(state: &AppState, id: &str, outcome: Result<Value, Value>) -> StatusCode {
    match state.shared.lock().unwrap().pending.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&state, &id, Ok(json_or_text(&body)))
}

async fn error(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&state, &id, Err(json_or_text(&body)))
}

async fn init_error(State(state): State<AppState>, body: Bytes) -> StatusCode {
    state.shared.lock().unwrap().init_error = Some(json_or_text(&body));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = AppState {
            queue: Arc::new(tokio::sync::Mutex::new(rx)),
            shared: shared.clone(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RuntimeApi { addr, tx, shared }
    }

    /// Invokes the function with `payload`: its response, or its error document.
    pub async fn invoke(&self, payload: Value) -> Result<Value, Value> {
        let id = format!("req-{:016x}", rand::random::<u64>());
        let (tx, rx) = oneshot::channel();
        self.shared.lock().unwrap().pending.insert(id.clone(), tx);
        self.tx
            .send(Invocation { id, payload })
            .expect("runtime API is running");
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the function answered within 60 s")
            .expect("the runtime API kept the invocation")
    }

    pub fn init_error(&self) -> Option<Value> {
        self.shared.lock().unwrap().init_error.clone()
    }
}

/// `target/<profile>/notes-lambda`, next to the test binary's `deps/` folder, or `NOTES_LAMBDA_BIN`.
pub fn notes_lambda_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NOTES_LAMBDA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join("notes-lambda");
    assert!(
        bin.exists(),
        "{} does not exist: build the workspace first (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A running `notes-lambda` serving one handler against a runtime API. Killed on drop.
pub struct LambdaProcess {
    pub child: tokio::process::Child,
}

impl LambdaProcess {
    pub fn spawn(handler: &str, runtime: &RuntimeApi, env: &[(String, String)]) -> LambdaProcess {
        Self::spawn_binary(&notes_lambda_binary(), handler, runtime, env)
    }

    pub fn spawn_binary(
        binary: &std::path::Path,
        handler: &str,
        runtime: &RuntimeApi,
        env: &[(String, String)],
    ) -> LambdaProcess {
        Self::spawn_command(tokio::process::Command::new(binary), handler, runtime, env)
    }

    /// [`spawn_binary`](Self::spawn_binary) with a command of one's own: the binary under an
    /// emulator (`qemu-aarch64-static -L … bootstrap`), say.
    pub fn spawn_command(
        mut cmd: tokio::process::Command,
        handler: &str,
        runtime: &RuntimeApi,
        env: &[(String, String)],
    ) -> LambdaProcess {
        let function = format!("local-{handler}");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("_HANDLER", handler)
            .env("AWS_LAMBDA_RUNTIME_API", runtime.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2024/03/12/[$LATEST]0123456789abcdef",
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        LambdaProcess {
            child: cmd.spawn().expect("start notes-lambda"),
        }
    }

    /// Stops the process and returns everything it logged (stdout, then stderr).
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let out = self.child.wait_with_output().await.expect("collect output");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// A fixture of the handlers' tests (`handlers/tests/fixtures/{name}`): real event shapes.
pub fn fixture(name: &str) -> Value {
    let path = crate::workspace_root()
        .join("handlers/tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

/// An HTTP API (payload 2.0) event, as API Gateway sends it.
pub fn http_event(method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> Value {
    use serde_json::json;
    let mut headers = json!({"content-type": "application/json", "host": "api.local"});
    if let Some(t) = token {
        headers["authorization"] = json!(format!("Bearer {t}"));
    }
    let mut ev = json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "local", "domainName": "api.local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r1", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "12/Mar/2024:14:22:10 +0000", "timeEpoch": 1710253330000u64},
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        ev["body"] = json!(b.to_string());
    }
    ev
}

/// A WebSocket `$connect` (with `?token=`) or `$disconnect` event for a connection.
pub fn ws_event(route: &str, connection_id: &str, token: Option<&str>) -> Value {
    use serde_json::json;
    let mut ev = fixture("websocket-connect.json");
    ev["requestContext"]["routeKey"] = json!(route);
    ev["requestContext"]["eventType"] = json!(if route == "$connect" {
        "CONNECT"
    } else {
        "DISCONNECT"
    });
    ev["requestContext"]["connectionId"] = json!(connection_id);
    let o = ev.as_object_mut().unwrap();
    match token {
        Some(t) => {
            o.insert("queryStringParameters".into(), json!({"token": t}));
            o.insert(
                "multiValueQueryStringParameters".into(),
                json!({"token": [t]}),
            );
        }
        None => {
            o.remove("queryStringParameters");
            o.remove("multiValueQueryStringParameters");
        }
    }
    ev
}

/// An SQS batch (as the event source mapping delivers it) of `(messageId, body)` records.
pub fn sqs_event(records: &[(&str, String)]) -> Value {
    let template = fixture("sqs-eventbridge.json")["Records"][0].clone();
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            let mut r = template.clone();
            r["messageId"] = Value::from(*id);
            r["body"] = Value::from(body.as_str());
            r
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// An EventBridge event (as a rule delivers it to a function) of the notes service.
pub fn eventbridge_event(detail: Value) -> Value {
    let mut ev = fixture("eventbridge-note-saved.json");
    ev["detail-type"] = detail["eventType"].clone();
    ev["detail"] = detail;
    ev
}
