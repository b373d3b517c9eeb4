//! The app as a client meets it, for `smoke` and `load`: its URLs (from the stacks, or `dev`'s with
//! `--local`), JSON over HTTP(S) with a bearer token, and WebSockets (`ws://` and `wss://`). TLS is
//! rustls with the system's root certificates.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use notes_handlers::metering::Counts;

use crate::aws::stacks;
use crate::commands::dev::history::{GET_COUNTER_HISTORY, GET_COUNTERS};
use crate::context::{Context, DEV_ACCESS_KEY, LocalArg, dev_token};
use crate::patience::{self, NO_ANSWER_ATTEMPTS, NoAnswer};

/// The app's HTTP API and WebSocket URLs.
pub struct Endpoints {
    pub api: String,
    pub ws: String,
}

/// `dev`'s URLs with `--local`, else the deployed stage's (`ApiUrl` and `WebSocketUrl` outputs).
pub async fn endpoints(ctx: &Context, local: &LocalArg) -> anyhow::Result<Endpoints> {
    if let Some(base) = &local.local {
        let base = base.trim_end_matches('/').to_owned();
        let ws = match base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}/ws"),
            Some((_, rest)) => format!("ws://{rest}/ws"),
            None => anyhow::bail!("--local {base}: not a URL (e.g. http://127.0.0.1:3000)"),
        };
        return Ok(Endpoints { api: base, ws });
    }
    let config = ctx.aws().await?;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let api = stacks::output(&cfn, ctx.stage(), "auth", "ApiUrl", "--stage").await?;
    let ws = stacks::output(&cfn, ctx.stage(), "websocket", "WebSocketUrl", "--stage").await?;
    Ok(Endpoints {
        api: api.trim_end_matches('/').to_owned(),
        ws,
    })
}

impl Endpoints {
    /// Whether either URL needs TLS.
    pub fn secure(&self) -> bool {
        self.api.starts_with("https://") || self.ws.starts_with("wss://")
    }
}

/// TLS for `https://` and `wss://`: rustls with the system's root certificates (none are needed,
/// and none looked for, when both URLs are plain, as `dev`'s are).
pub fn tls_config(need_roots: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    if need_roots {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A certificate the store cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            anyhow::bail!(
                "no root certificates found on this machine ({} errors reading them): install the ca-certificates package",
                found.errors.len()
            );
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("setting up TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The HTTP side: JSON requests with an optional bearer token.
pub struct Api {
    client: HttpClient,
    base: String,
}

impl Api {
    pub fn new(base: &str, tls: &rustls::ClientConfig) -> Api {
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(patience::CONNECT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Api {
            client,
            base: base.to_owned(),
        }
    }

    /// `method path` with `body` as JSON; the status and the JSON answer (`null` when not JSON).
    /// A request safe to repeat (GET, PUT, DELETE) is retried when it gets no answer; a POST is not,
    /// as it may have been done (see [`Api::call_retrying`]).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let retry = method.is_idempotent();
        self.call_with(method, path, token, body, retry).await
    }

    /// [`Api::call`], retried on no answer whatever the method: for a POST the caller knows to be
    /// safe to repeat (signing up answers 409 the second time; logging in changes nothing).
    pub async fn call_retrying(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        self.call_with(method, path, token, body, true).await
    }

    async fn call_with(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        retry: bool,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(|b| Bytes::from(b.to_string()));
        let request = || {
            let mut request = http::Request::builder().method(method.clone()).uri(&url);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            if bytes.is_some() {
                request = request.header("content-type", "application/json");
            }
            request.body(Full::new(bytes.clone().unwrap_or_default()))
        };
        let what = format!("{method} {url}");
        let response = self.send(&what, retry, request).await?;
        let status = response.status().as_u16();
        let body = read_body(response, &what).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Sends what `request` builds, each attempt given [`patience::CONNECT`] to connect and
    /// [`patience::FIRST_BYTE`] (with the body's upload time) to answer; one without an answer is
    /// said on stderr and tried again, up to [`NO_ANSWER_ATTEMPTS`] in all when `retry` (else once),
    /// then the call fails with [`NoAnswer`]. Other failures return at once.
    async fn send(
        &self,
        what: &str,
        retry: bool,
        request: impl Fn() -> Result<http::Request<Full<Bytes>>, http::Error>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let address = patience::address_of(&self.base);
        let of = if retry { NO_ANSWER_ATTEMPTS } else { 1 };
        let mut wait = patience::FIRST_BYTE;
        for attempt in 1..=of {
            let request = request().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            let len = hyper::body::Body::size_hint(request.body()).exact();
            wait = patience::first_byte_wait(len).unwrap_or(patience::FIRST_BYTE);
            let started = std::time::Instant::now();
            match tokio::time::timeout(wait, self.client.request(request)).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) if !timed_out(&e) => {
                    anyhow::bail!("{what}: {}", notes_handlers::domain::error::Chain(&e))
                }
                // No connection in time, or no answer on it.
                Ok(Err(_)) | Err(_) => {}
            }
            if attempt < of {
                patience::say(&patience::retry_line(
                    &address,
                    started.elapsed(),
                    attempt + 1,
                    of,
                ));
            }
        }
        Err(anyhow::Error::new(NoAnswer {
            address,
            attempts: of,
            wait,
        })
        .context(format!(
            "{what}: the server did not answer (for --local, is `notesctl dev` stuck?)"
        )))
    }
}

/// Whether connecting timed out (the connector's [`patience::CONNECT`]).
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// How long an answer's body may take once its first byte came.
const BODY: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole body of `response`, within [`BODY`].
async fn read_body(
    response: http::Response<hyper::body::Incoming>,
    what: &str,
) -> anyhow::Result<Bytes> {
    match tokio::time::timeout(BODY, response.into_body().collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) => anyhow::bail!("{what}: reading the answer: {e}"),
        Err(_) => anyhow::bail!(
            "{what}: the answer stopped coming (not whole after {} s)",
            BODY.as_secs()
        ),
    }
}

/// The headers that sign a request to `notesctl dev`'s runbook API with the run's token, as the SDK
/// signs its `--local` calls (`AWS4-HMAC-SHA256`, access key [`DEV_ACCESS_KEY`], region `local`).
pub fn dev_signature(
    token: &str,
    service: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    when: std::time::SystemTime,
) -> anyhow::Result<Vec<(String, String)>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(DEV_ACCESS_KEY, token, None, None, "notesctl-dev")
            .into();
    let params: aws_sigv4::http_request::SigningParams =
        aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("local")
            .name(service)
            .time(when)
            .settings(SigningSettings::default())
            .build()?
            .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _) = sign(request, &params)?.into_parts();
    let (signed, _) = instructions.into_parts();
    Ok(signed
        .iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect())
}

/// `notesctl dev`'s connection cap and what it refused past it.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DevConnections {
    pub max: u64,
    pub refused: u64,
}

impl Api {
    /// `notesctl dev`'s counters (what each port did since it started), read through its runbook
    /// API with the run's token.
    pub async fn dev_counters(&self) -> anyhow::Result<Counts> {
        self.dev_counters_with(&dev_token()?).await
    }

    /// The same, signed with `token`.
    pub async fn dev_counters_with(&self, token: &str) -> anyhow::Result<Counts> {
        let answer = self
            .dev_api(token, GET_COUNTERS, json!({}), "Counts")
            .await?;
        Ok(serde_json::from_value(answer["Counts"].clone())?)
    }

    /// dev's connection cap (`--max-connections`) and how many connections it refused past it since
    /// it started; `None` from a dev that does not say (older than this one).
    pub async fn dev_connections(&self, token: &str) -> anyhow::Result<Option<DevConnections>> {
        let answer = self
            .dev_api(token, GET_COUNTERS, json!({}), "Counts")
            .await?;
        Ok(serde_json::from_value(answer["Connections"].clone()).ok())
    }

    /// dev's counters as sampled every ten seconds since `since` (epoch seconds), and now.
    pub async fn dev_counter_history(&self, since: i64) -> anyhow::Result<Vec<(i64, Counts)>> {
        let answer = self
            .dev_api(
                &dev_token()?,
                GET_COUNTER_HISTORY,
                json!({"Since": since}),
                "Snapshots",
            )
            .await?;
        answer["Snapshots"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                Ok((
                    s["Time"].as_i64().unwrap_or_default(),
                    serde_json::from_value(s["Counts"].clone())?,
                ))
            })
            .collect()
    }

    /// One call of dev's own runbook operations (`target`), signed with `token`; the answer, which
    /// must hold `expect`.
    async fn dev_api(
        &self,
        token: &str,
        target: &str,
        input: Value,
        expect: &str,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/", self.base);
        let host = http::Uri::try_from(&url)?
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let body = input.to_string();
        let unsigned = [
            ("host", host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let signed = dev_signature(
            token,
            "notesctl",
            &url,
            &unsigned,
            body.as_bytes(),
            std::time::SystemTime::now(),
        )?;
        let body = Bytes::from(body);
        let request = || {
            let mut request = http::Request::builder()
                .method(http::Method::POST)
                .uri(&url);
            for (name, value) in unsigned.iter().skip(1) {
                request = request.header(*name, *value);
            }
            for (name, value) in &signed {
                request = request.header(name, value);
            }
            request.body(Full::new(body.clone()))
        };
        let what = format!("reading notesctl dev's counters at {url}");
        // A read: safe to repeat (the signature stays good for minutes).
        let response = self.send(&what, true, request).await?;
        let status = response.status().as_u16();
        let bytes = read_body(response, &what).await?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != 200 || answer.get(expect).is_none() {
            let why = answer["message"].as_str().unwrap_or("no message");
            let next = if status == 403 {
                ""
            } else {
                "; this needs a notesctl dev of this version or later"
            };
            anyhow::bail!(
                "notesctl dev at {url} did not give its counters (HTTP {status}: {why}){next}"
            );
        }
        Ok(answer)
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Opens the WebSocket at `url` (`ws://` or `wss://`).
pub async fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<Socket> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: not a URL: {e}", clip_token(url)))?;
    let host = uri.host().unwrap_or_default().to_owned();
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let silent = |wait| {
        anyhow::Error::new(NoAnswer {
            address: format!("{host}:{port}"),
            attempts: 1,
            wait,
        })
        .context(format!("opening the WebSocket {}", clip_token(url)))
    };
    let tcp = tokio::time::timeout(
        patience::CONNECT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| silent(patience::CONNECT))?
    .map_err(|e| anyhow::anyhow!("connecting to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if secure {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
        let tls = tokio::time::timeout(
            patience::FIRST_BYTE,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| silent(patience::FIRST_BYTE))?
        .map_err(|e| anyhow::anyhow!("TLS with {host}: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    // A small read buffer: tungstenite zeroes the whole buffer on every read, and at its 128 KiB
    // default that cost a load run's thousand sockets a third of the generator's CPU. The app's
    // messages fit API Gateway's frames (32 KB); a larger one still arrives, over several reads.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024);
    let (socket, _) = tokio::time::timeout(
        patience::FIRST_BYTE,
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)),
    )
    .await
    .map_err(|_| silent(patience::FIRST_BYTE))?
    .map_err(|e| anyhow::anyhow!("WebSocket handshake with {}: {e}", clip_token(url)))?;
    Ok(socket)
}

/// The URL without its token, for messages.
pub fn clip_token(url: &str) -> &str {
    url.split_once("?token=").map_or(url, |(u, _)| u)
}

impl Api {
    /// Signs `user` up (a 409 means it exists) and logs in: the token, and whether it was new.
    /// `hint` says where the password comes from, for when it is not the user's.
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
        hint: &str,
    ) -> anyhow::Result<(String, bool)> {
        let credentials = json!({ "username": user, "password": password });
        let (status, body) = self
            .call_retrying(
                http::Method::POST,
                "/auth/signup",
                None,
                Some(credentials.clone()),
            )
            .await?;
        expect(status, &[201, 409], "POST /auth/signup", &body)?;
        let signed_up = status == 201;
        let (status, body) = self
            .call_retrying(http::Method::POST, "/auth/login", None, Some(credentials))
            .await?;
        if status == 401 && !signed_up {
            anyhow::bail!(
                "the user {user} exists with another password: pass the one it was created with ({hint})"
            );
        }
        expect(status, &[200], "POST /auth/login", &body)?;
        let token = body["token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("POST /auth/login answered 200 without a token"))?
            .to_owned();
        Ok((token, signed_up))
    }
}

/// Ok when `status` is one of `want`; else an error with the API's own message.
pub fn expect(status: u16, want: &[u16], what: &str, body: &Value) -> anyhow::Result<()> {
    if want.contains(&status) {
        return Ok(());
    }
    let message = body["error"]
        .as_str()
        .or(body["message"].as_str())
        .unwrap_or("");
    anyhow::bail!("{what} answered {status} {message}")
}
